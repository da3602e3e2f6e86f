"""``type: dummy_deny``: refuses every request (403); a safe target for routes and tests."""

from __future__ import annotations

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig

TYPE = "dummy_deny"
KEYS: tuple[str, ...] = ()


def parse(sec: ObjectSection, ctx: Context, name: str) -> EscaperConfig | None:
    if not sec.ok:
        return None
    return EscaperConfig(name=name, type=TYPE, line=sec.key_line("name"))


SPEC = TypeSpec(keys=KEYS, parse=parse)
