"""Resolvers: registry of types by their profile `type:` name."""

from __future__ import annotations

from arcus.config.schema import ResolverConfig
from arcus.resolve.base import Resolver, ip_literal
from arcus.resolve.system import SystemResolver

RESOLVER_TYPES: dict[str, type[Resolver]] = {"system": SystemResolver}


def build_resolver(config: ResolverConfig) -> Resolver:
    return RESOLVER_TYPES[config.type](config)


__all__ = ["Resolver", "SystemResolver", "build_resolver", "ip_literal", "RESOLVER_TYPES"]
