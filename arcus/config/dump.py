"""A loaded profile back to plain data, in the profile's own spelling.

``arcus config show`` prints this as YAML or JSON. It is the *effective* profile (every
default filled in, profile-wide timeouts and limits copied into each server), and it loads
again to the same Profile, which the tests check. Only the keys a type accepts are written,
so a ``dummy_deny`` escaper does not grow ``direct_fixed`` keys.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from arcus.config.loader import FAMILIES
from arcus.config.schema import Profile
from arcus.config.values import format_addr, format_duration

SECRET_KEYS = frozenset({"password"})


def profile_to_dict(profile: Profile, *, reveal_secrets: bool = False) -> dict[str, Any]:
    """The effective profile; credentials of upstream proxies masked unless ``reveal_secrets``."""
    out: dict[str, Any] = {}
    for family in FAMILIES:
        objects = getattr(profile, family.plural)
        out[family.plural] = [_object(obj, family.types[obj.type].keys, reveal_secrets) for obj in objects]
    out["log"] = _plain(profile.log)
    out["log"]["tenants"] = dict(profile.log.tenants)
    if profile.log.max_size is None:
        del out["log"]["max_size"], out["log"]["backups"]
    out["runtime"] = _runtime(profile)
    out["audit"] = _plain(profile.audit)
    m = profile.metrics
    if m.listen is not None or m.statsd is not None:
        out["metrics"] = {"max_users": m.max_users}
        if m.listen is not None:
            out["metrics"]["listen"] = format_addr(*m.listen)
        if m.statsd is not None:
            out["metrics"]["statsd"] = {"target": format_addr(*m.statsd.target), "interval": format_duration(m.statsd.interval),
                                        "prefix": m.statsd.prefix, "max_packet": m.statsd.max_packet}
    if profile.icap_services:
        out["icap_services"] = [
            {**_plain(s), "servers": [server.url for server in s.servers]} for s in profile.icap_services
        ]
    return out


def _runtime(profile: Profile) -> dict[str, Any]:
    """The runtime section; its rates are not durations, and None (unlimited) is left out."""
    rt = profile.runtime
    out: dict[str, Any] = {"graceful_timeout": format_duration(rt.graceful_timeout)}
    if rt.max_connections is not None:
        out["max_connections"] = rt.max_connections
    if rt.rps is not None:
        out["rps"] = f"{rt.rps:g}"
    if rt.bandwidth is not None:
        out["bandwidth"] = f"{int(rt.bandwidth)}B"
    return out


def _object(obj: Any, keys: tuple[str, ...], reveal_secrets: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": obj.name, "type": obj.type}
    for key in keys:
        value = getattr(obj, key)
        if value is None:
            continue
        if key in SECRET_KEYS and not reveal_secrets:
            out[key] = "********"  # credentials of upstream proxies are never printed
        elif key == "listen":
            addrs = [format_addr(host, port) for host, port in value]
            out[key] = addrs[0] if len(addrs) == 1 else addrs
        else:
            out[key] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value) if f.name != "line"}
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):  # every other float of the schema is a duration
        return format_duration(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
