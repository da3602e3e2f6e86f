"""Resolver types: ``type:`` value -> parser. A new resolver type is one module plus one entry here.

Imports are explicit (no discovery by string) so a frozen binary sees every module.
"""

from __future__ import annotations

from arcus.config.objects import Family
from arcus.config.resolver import c_ares, system

RESOLVERS = Family(
    name="resolver",
    plural="resolvers",
    types={
        system.TYPE: system.SPEC,
        c_ares.TYPE: c_ares.SPEC,
    },
)
