"""``type: route_upstream``: choose the next escaper by the destination host; first match wins.

```yaml
- name: route
  type: route_upstream
  rules:
    - hosts: [internal.example, .corp.example, "~(www|cdn)[0-9]*\\.example\\.net"]
      escaper: via_proxy
    - nets: [10.0.0.0/8, 2001:db8::/32]
      escaper: direct
  fallback: direct
```

``hosts`` are the policy engine's host patterns (``arcus.policy.hosts``): ``example.com``
exactly, ``.example.com`` the domain and its children, ``*.example.com`` children only, globs,
and ``~regex``. ``nets`` match a destination given as an IP address (a name is not resolved to
be routed: the next escaper resolves it). A rule may hold both. ``fallback`` takes what no
rule matches. The patterns are compiled (and a regex too slow for hostile names refused) when
the escaper is built; here they are only checked for shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from arcus.config.escaper._common import nested_reference, read_rules, take_optional
from arcus.config.objects import Context, ObjectSection, TypeSpec
from arcus.config.schema import EscaperConfig
from arcus.config.yamlnodes import BadValue, Section, read_cidr, read_list, read_str

TYPE = "route_upstream"
KEYS = ("rules", "fallback")
RULE_KEYS = ("hosts", "nets", "escaper")


@dataclass(frozen=True, slots=True)
class UpstreamRule:
    escaper: str
    hosts: tuple[str, ...] = ()
    nets: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True, slots=True)
class RouteUpstreamEscaperConfig(EscaperConfig):
    rules: tuple[UpstreamRule, ...] = ()
    fallback: str = ""

    @property
    def next_escapers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([r.escaper for r in self.rules] + [self.fallback]))


def read_host_pattern(node) -> str:
    text = read_str(node).strip()
    if not text:
        raise BadValue("empty host pattern")
    if text.startswith("~"):
        try:
            re.compile(text[1:])
        except re.error as exc:
            raise BadValue(f"bad regex {text[1:]!r}: {exc}") from None
    elif any(c in text for c in " /@"):
        raise BadValue(f'"{text}" is not a host pattern; write a host such as "example.com" or ".example.com"')
    return text


def parse(sec: ObjectSection, ctx: Context, name: str) -> RouteUpstreamEscaperConfig | None:
    def rule(sub: Section, index: int) -> UpstreamRule | None:
        hosts = take_optional(sub, "hosts", read_list(read_host_pattern), ())
        nets = take_optional(sub, "nets", read_list(read_cidr), ())
        escaper = nested_reference(sec, sub, "escaper")
        if sub.ok and not hosts and not nets:
            sub.error('a rule needs "hosts" or "nets" (or both), each a non-empty list')
        if not sub.ok or escaper is None:
            return None
        return UpstreamRule(escaper=escaper, hosts=hosts, nets=nets, line=sub.line)

    rules = read_rules(sec, "rules", RULE_KEYS, rule, required=True)
    fallback = sec.reference("fallback", "escaper", required=True)
    if not sec.ok or fallback is None:
        return None
    return RouteUpstreamEscaperConfig(name=name, type=TYPE, rules=rules, fallback=fallback, line=sec.key_line("name"))


SPEC = TypeSpec(keys=KEYS, parse=parse)
