"""``type: route_client``: choose the next escaper by who the client is; first match wins.

```yaml
- name: by_client
  type: route_client
  rules:
    - clients: [10.1.0.0/16]
      escaper: branch_egress
    - users: [alice, bob]
      escaper: via_proxy
  fallback: direct
```

``clients`` match the client's address; ``users`` the name of the authenticated user (as the
server passes it: the user's name within its tenant). A rule may hold both (either matches).
"""

from __future__ import annotations

from dataclasses import dataclass

from arcus.config.escaper._common import nested_reference, read_rules, take_optional
from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig
from arcus.config.yamlnodes import Section, read_cidr, read_list, read_name

TYPE = "route_client"
KEYS = ("rules", "fallback")
RULE_KEYS = ("clients", "users", "escaper")


@dataclass(frozen=True, slots=True)
class ClientRule:
    escaper: str
    clients: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True, slots=True)
class RouteClientEscaperConfig(EscaperConfig):
    rules: tuple[ClientRule, ...] = ()
    fallback: str = ""

    @property
    def next_escapers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([r.escaper for r in self.rules] + [self.fallback]))


def parse(sec: ObjectSection, ctx: Context, name: str) -> RouteClientEscaperConfig | None:
    def rule(sub: Section, index: int) -> ClientRule | None:
        clients = take_optional(sub, "clients", read_list(read_cidr), ())
        users = take_optional(sub, "users", read_list(read_name), ())
        escaper = nested_reference(sec, sub, "escaper")
        if sub.ok and not clients and not users:
            sub.error('a rule needs "clients" or "users" (or both), each a non-empty list')
        if not sub.ok or escaper is None:
            return None
        return ClientRule(escaper=escaper, clients=clients, users=users, line=sub.line)

    rules = read_rules(sec, "rules", RULE_KEYS, rule, required=True)
    fallback = sec.reference("fallback", "escaper", required=True)
    if not sec.ok or fallback is None:
        return None
    return RouteClientEscaperConfig(name=name, type=TYPE, rules=rules, fallback=fallback, line=sec.key_line("name"))


SPEC = TypeSpec(keys=KEYS, parse=parse)
