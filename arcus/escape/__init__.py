"""Escapers: registry of types by their profile `type:` name."""

from __future__ import annotations

from arcus.config.schema import EscaperConfig
from arcus.escape.base import Connected, Escaper
from arcus.escape.direct_fixed import DirectFixedEscaper
from arcus.escape.dummy_deny import DummyDenyEscaper
from arcus.policy.egress import EgressGuard
from arcus.resolve.base import Resolver

ESCAPER_TYPES = ("direct_fixed", "dummy_deny")


def build_escaper(config: EscaperConfig, resolvers: dict[str, Resolver], own_addresses: frozenset[str]) -> Escaper:
    if config.type == "dummy_deny":
        return DummyDenyEscaper(config)
    if config.type == "direct_fixed":
        guard = EgressGuard(config.allow_special, own_addresses, config.loopback_for_local_clients)
        return DirectFixedEscaper(config, resolvers[config.resolver or ""], guard)
    raise ValueError(f"unknown escaper type {config.type}")


__all__ = ["Connected", "Escaper", "build_escaper", "ESCAPER_TYPES"]
