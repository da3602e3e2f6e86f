"""``type: system``: the operating system's resolver (getaddrinfo, run off the event loop), cached."""

from __future__ import annotations

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import ResolverConfig
from arcus.config.yamlnodes import default_of, read_duration, read_int

TYPE = "system"
KEYS = ("timeout", "cache_ttl", "negative_ttl", "max_entries")


def parse(sec: ObjectSection, ctx: Context, name: str) -> ResolverConfig | None:
    timeout = sec.take("timeout", read_duration, default_of(ResolverConfig, "timeout"))
    cache_ttl = sec.take("cache_ttl", read_duration, default_of(ResolverConfig, "cache_ttl"))
    negative_ttl = sec.take("negative_ttl", read_duration, default_of(ResolverConfig, "negative_ttl"))
    max_entries = sec.take("max_entries", read_int(1), default_of(ResolverConfig, "max_entries"))
    if not sec.ok:
        return None
    return ResolverConfig(
        name=name,
        type=TYPE,
        timeout=timeout,
        cache_ttl=cache_ttl,
        negative_ttl=negative_ttl,
        max_entries=max_entries,
        line=sec.key_line("name"),
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
