"""Resolvers: registry of types by their profile `type:` name.

Imports are explicit (no discovery by string) so a frozen binary sees every module.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from arcus.config.schema import ResolverConfig
from arcus.resolve.base import Answer, Lookup, LookupFailed, Resolver, ip_literal
from arcus.resolve.c_ares import CAresResolver
from arcus.resolve.system import SystemResolver

RESOLVER_TYPES: dict[str, type[Resolver]] = {"system": SystemResolver, "c_ares": CAresResolver}


def build_resolver(config: ResolverConfig, *, clock: Callable[[], float] = time.monotonic) -> Resolver:
    return RESOLVER_TYPES[config.type](config, clock=clock)


__all__ = [
    "Answer",
    "CAresResolver",
    "Lookup",
    "LookupFailed",
    "RESOLVER_TYPES",
    "Resolver",
    "SystemResolver",
    "build_resolver",
    "ip_literal",
]
