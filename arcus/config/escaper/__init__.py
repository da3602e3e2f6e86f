"""Escaper types: ``type:`` value -> parser. A new escaper type is one module plus one entry here.

Imports are explicit (no discovery by string) so a frozen binary sees every module.
"""

from __future__ import annotations

from arcus.config.escaper import direct_fixed, dummy_deny
from arcus.config.objects import Family

ESCAPERS = Family(
    name="escaper",
    plural="escapers",
    types={
        direct_fixed.TYPE: direct_fixed.SPEC,
        dummy_deny.TYPE: dummy_deny.SPEC,
    },
)
