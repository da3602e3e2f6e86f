"""``type: route_failover``: the primary escaper first, the standby when the primary fails or
has not connected within ``fallback_delay`` (default 1s).

Once the standby is started the primary is not abandoned: whichever connects first is used and
the other is closed, all within the server's connect timeout (as g3's route_failover races them).
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig
from arcus.config.yamlnodes import default_of, read_duration

TYPE = "route_failover"
KEYS = ("primary", "standby", "fallback_delay")


@dataclass(frozen=True, slots=True)
class RouteFailoverEscaperConfig(EscaperConfig):
    primary: str = ""
    standby: str = ""
    fallback_delay: float = 1.0  # the primary alone this long, then the standby alongside

    @property
    def next_escapers(self) -> tuple[str, ...]:
        return (self.primary, self.standby)


def parse(sec: ObjectSection, ctx: Context, name: str) -> RouteFailoverEscaperConfig | None:
    primary = sec.reference("primary", "escaper", required=True)
    standby = sec.reference("standby", "escaper", required=True)
    delay = sec.take("fallback_delay", read_duration, default_of(RouteFailoverEscaperConfig, "fallback_delay"))
    if primary is not None and primary == standby:
        sec.error(f'standby is the primary "{primary}"; name a different escaper', sec.value_line("standby"))
    if not sec.ok or primary is None or standby is None:
        return None
    return RouteFailoverEscaperConfig(
        name=name, type=TYPE, primary=primary, standby=standby, fallback_delay=delay, line=sec.key_line("name")
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
