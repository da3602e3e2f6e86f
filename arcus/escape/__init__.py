"""Escapers: the registry of types by their profile ``type:`` name, and building them.

``build_escapers`` builds a profile's escapers in dependency order (an escaper after every
escaper it names, depth first), so a route escaper holds the live objects it routes to.
Imports are explicit (no discovery by string) so a frozen binary sees every module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from arcus.config.escaper.direct_fixed import DirectFixedEscaperConfig
from arcus.config.escaper.direct_float import DirectFloatEscaperConfig
from arcus.config.escaper.graph import build_order, edges
from arcus.config.escaper.proxy_http import ProxyHttpEscaperConfig
from arcus.config.escaper.proxy_https import ProxyHttpsEscaperConfig
from arcus.config.escaper.proxy_socks5 import ProxySocks5EscaperConfig
from arcus.config.escaper.route_client import RouteClientEscaperConfig
from arcus.config.escaper.route_failover import RouteFailoverEscaperConfig
from arcus.config.escaper.route_geoip import RouteGeoipEscaperConfig
from arcus.config.escaper.route_select import RouteSelectEscaperConfig
from arcus.config.escaper.route_upstream import RouteUpstreamEscaperConfig
from arcus.config.schema import EscaperConfig
from arcus.errors import OperatorError
from arcus.escape.base import Connected, Escaper
from arcus.escape.direct_fixed import DirectFixedEscaper
from arcus.escape.direct_float import DirectFloatEscaper
from arcus.escape.dummy_deny import DummyDenyEscaper
from arcus.escape.proxy_http import ProxyHttpEscaper
from arcus.escape.proxy_https import ProxyHttpsEscaper
from arcus.escape.proxy_socks5 import ProxySocks5Escaper
from arcus.escape.route_client import RouteClientEscaper
from arcus.escape.route_failover import RouteFailoverEscaper
from arcus.escape.route_geoip import RouteGeoipEscaper, open_mmdb
from arcus.escape.route_select import RouteSelectEscaper
from arcus.escape.route_upstream import RouteUpstreamEscaper
from arcus.policy.egress import EgressGuard, HostAddresses
from arcus.policy.hosts import PatternError
from arcus.policy.nets import RangeError
from arcus.resolve.base import Resolver

Builder = Callable[[EscaperConfig, dict[str, Resolver], HostAddresses | frozenset[str], dict[str, Escaper]], Escaper]
C = TypeVar("C", bound=EscaperConfig)


def _typed(cls: type[C], config: EscaperConfig) -> C:
    """``config`` as the config class its escaper type reads (the loader builds that class for
    each ``type:``); a mismatch is a bug in whoever built the config, refused with both names."""
    if not isinstance(config, cls):
        raise TypeError(f"escaper {config.name} of type {config.type} needs a {cls.__name__}, got {type(config).__name__}")
    return config


def _guard(config: EscaperConfig, own: HostAddresses | frozenset[str]) -> EgressGuard:
    return EgressGuard(config.allow_special, own, config.loopback_for_local_clients)


def _resolver(config: EscaperConfig, resolvers: dict[str, Resolver]) -> Resolver | None:
    return resolvers.get(config.resolver or "")


def _route_geoip(c: EscaperConfig, r: dict[str, Resolver], e: dict[str, Escaper]) -> Escaper:
    config = _typed(RouteGeoipEscaperConfig, c)
    return RouteGeoipEscaper(config, e, r[config.resolver or ""], open_mmdb(config.mmdb))


# type name -> builder; each narrows the config to its escaper's own config class.
BUILDERS: dict[str, Builder] = {
    "dummy_deny": lambda c, r, o, e: DummyDenyEscaper(c),
    "direct_fixed": lambda c, r, o, e: DirectFixedEscaper(_typed(DirectFixedEscaperConfig, c), r[c.resolver or ""], _guard(c, o)),
    "direct_float": lambda c, r, o, e: DirectFloatEscaper(_typed(DirectFloatEscaperConfig, c), r[c.resolver or ""], _guard(c, o)),
    "proxy_http": lambda c, r, o, e: ProxyHttpEscaper(_typed(ProxyHttpEscaperConfig, c), _resolver(c, r)),
    "proxy_https": lambda c, r, o, e: ProxyHttpsEscaper(_typed(ProxyHttpsEscaperConfig, c), _resolver(c, r)),
    "proxy_socks5": lambda c, r, o, e: ProxySocks5Escaper(_typed(ProxySocks5EscaperConfig, c), _resolver(c, r)),
    "route_upstream": lambda c, r, o, e: RouteUpstreamEscaper(_typed(RouteUpstreamEscaperConfig, c), e),
    "route_client": lambda c, r, o, e: RouteClientEscaper(_typed(RouteClientEscaperConfig, c), e),
    "route_failover": lambda c, r, o, e: RouteFailoverEscaper(_typed(RouteFailoverEscaperConfig, c), e),
    "route_geoip": lambda c, r, o, e: _route_geoip(c, r, e),
    "route_select": lambda c, r, o, e: RouteSelectEscaper(_typed(RouteSelectEscaperConfig, c), e),
}
ESCAPER_TYPES = tuple(BUILDERS)


def build_escaper(
    config: EscaperConfig,
    resolvers: dict[str, Resolver],
    own_addresses: HostAddresses | frozenset[str],
    escapers: dict[str, Escaper] | None = None,
) -> Escaper:
    """One escaper; ``escapers`` holds the ones it names (built before it)."""
    builder = BUILDERS.get(config.type)
    if builder is None:
        raise ValueError(f"unknown escaper type {config.type}")
    return builder(config, resolvers, own_addresses, escapers or {})


def build_escapers(
    configs: Iterable[EscaperConfig],
    resolvers: dict[str, Resolver],
    own_addresses: HostAddresses | frozenset[str],
    source: str = "profile",
) -> dict[str, Escaper]:
    """Every escaper of a profile, by name, in profile order; wrappers hold what they name.

    Raises OperatorError (``source:line: escaper "x": ...``) for a loop among escapers, a
    route pattern the matchers refuse, an MMDB that cannot be read, or a pool whose health
    checks have nothing to connect to.
    """
    configs = list(configs)
    by_name = {c.name: c for c in configs}
    try:
        order = build_order(edges(configs))
    except ValueError as exc:
        raise OperatorError(f"{source}: {exc}", code="invalid", hint="break the loop: a route must end at a leaf escaper") from None
    built: dict[str, Escaper] = {}
    for name in order:
        config = by_name[name]
        where = f"{source}:{config.line}" if config.line else source
        try:
            escaper = build_escaper(config, resolvers, own_addresses, built)
        except (PatternError, RangeError) as exc:
            raise OperatorError(f'{where}: escaper "{name}": {exc}', code="invalid", hint=exc.hint) from None
        except (OSError, ValueError) as exc:  # an MMDB missing, not a MaxMind DB, or not a country one
            raise OperatorError(f'{where}: escaper "{name}": {exc}', code="invalid") from None
        if isinstance(escaper, RouteSelectEscaper) and escaper.unprobed():
            raise OperatorError(
                f'{where}: escaper "{name}": health checks have no address to check for '
                + ", ".join(escaper.unprobed()),
                code="invalid",
                hint="give those members a probe: host:port (only proxy escapers have an address of their own)",
            )
        built[name] = escaper
    return {c.name: built[c.name] for c in configs}


__all__ = ["Connected", "Escaper", "build_escaper", "build_escapers", "ESCAPER_TYPES", "BUILDERS"]
