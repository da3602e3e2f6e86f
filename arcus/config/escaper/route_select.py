"""``type: route_select``: spread connections over a pool of escapers, with health checks and a
circuit breaker (g3's ``route_select``; the pick policies are Arcus' own set).

```yaml
- name: pool
  type: route_select
  next:
    - escaper: proxy_a
      weight: 3
    - escaper: proxy_b
      probe: 192.0.2.10:3128      # health-check target (default: the escaper's own proxy address)
  pick: weighted_round_robin       # round_robin | weighted_round_robin | consistent_hash
  hash_by: client                  # consistent_hash: client (address) | user (falls back to client)
  health_interval: 5s              # a TCP connect to each member's probe this often (off when absent)
  health_timeout: 2s
  max_failures: 3                  # consecutive failures that take a member out
  retry_after: 10s                 # how long a member stays out before it is probed back in
```

A member that fails ``max_failures`` times in a row (real connections and health checks alike)
is taken out; after ``retry_after`` one probe (the next health check, or without health checks
one real connection) decides whether it comes back. A connection whose member refuses is tried
once more on the next member in the pick order, within the connect timeout.
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.escaper._common import nested_reference, read_rules, read_upstream, take_optional
from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig
from arcus.config.yamlnodes import Section, default_of, read_choice, read_duration, read_int

TYPE = "route_select"
KEYS = ("next", "pick", "hash_by", "health_interval", "health_timeout", "max_failures", "retry_after")
NODE_KEYS = ("escaper", "weight", "probe")
PICKS = ("round_robin", "weighted_round_robin", "consistent_hash")
HASH_BY = ("client", "user")


@dataclass(frozen=True, slots=True)
class SelectNode:
    escaper: str
    weight: int = 1
    probe: str | None = None  # "host:port" for health checks; None: the escaper's own
    line: int | None = None


@dataclass(frozen=True, slots=True)
class RouteSelectEscaperConfig(EscaperConfig):
    next: tuple[SelectNode, ...] = ()
    pick: str = "round_robin"
    hash_by: str = "client"
    health_interval: float | None = None  # None: no active health checks
    health_timeout: float = 2.0
    max_failures: int = 3
    retry_after: float = 10.0

    @property
    def next_escapers(self) -> tuple[str, ...]:
        return tuple(n.escaper for n in self.next)


def parse(sec: ObjectSection, ctx: Context, name: str) -> RouteSelectEscaperConfig | None:
    seen: dict[str, int] = {}

    def node(sub: Section, index: int) -> SelectNode | None:
        escaper = nested_reference(sec, sub, "escaper")
        weight = take_optional(sub, "weight", read_int(1), 1)
        probe = take_optional(sub, "probe", read_upstream, None)
        if escaper is not None:
            if escaper in seen:
                sub.error(f'escaper "{escaper}" is already in the pool (line {seen[escaper]})', sub.value_line("escaper"))
            else:
                seen[escaper] = sub.value_line("escaper")
        if not sub.ok or escaper is None:
            return None
        return SelectNode(escaper=escaper, weight=weight, probe=probe, line=sub.line)

    nodes = read_rules(sec, "next", NODE_KEYS, node, required=True)
    pick = sec.take("pick", read_choice(PICKS), default_of(RouteSelectEscaperConfig, "pick"))
    hash_by = sec.take("hash_by", read_choice(HASH_BY), default_of(RouteSelectEscaperConfig, "hash_by"))
    interval = sec.take("health_interval", read_duration, None)
    timeout = sec.take("health_timeout", read_duration, default_of(RouteSelectEscaperConfig, "health_timeout"))
    failures = sec.take("max_failures", read_int(1), default_of(RouteSelectEscaperConfig, "max_failures"))
    retry_after = sec.take("retry_after", read_duration, default_of(RouteSelectEscaperConfig, "retry_after"))
    if hash_by != "client" and pick != "consistent_hash":
        sec.error(f"hash_by applies to pick: consistent_hash only (pick is {pick})", sec.value_line("hash_by"))
    if pick == "round_robin" and any(n.weight != 1 for n in nodes):
        sec.error("weights apply to pick: weighted_round_robin or consistent_hash; round_robin ignores them",
                  sec.value_line("pick") if sec.has("pick") else sec.key_line("next"))
    if interval is not None and timeout >= interval:
        sec.error("health_timeout must be shorter than health_interval", sec.value_line("health_timeout"))
    if not sec.ok:
        return None
    return RouteSelectEscaperConfig(
        name=name,
        type=TYPE,
        next=nodes,
        pick=pick,
        hash_by=hash_by,
        health_interval=interval,
        health_timeout=timeout,
        max_failures=failures,
        retry_after=retry_after,
        line=sec.key_line("name"),
    )


SPEC = TypeSpec(keys=KEYS, parse=parse)
