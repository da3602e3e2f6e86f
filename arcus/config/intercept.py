"""The profile's ``intercept:`` section: TLS interception for the box and per tenant.

    intercept:
      enabled: false               # the box's default for every tenant
      upstream_ca: /etc/ssl/lab.pem  # verify upstreams against this bundle (default: system roots)
      bypass_pinned: true          # splice the shipped list of certificate-pinned applications
      rules:                       # first match wins; tenant rules come before these
        - {action: splice, hosts: [".bank.example"]}
        - {action: intercept, hosts: [lab.test], insecure: true, name: lab}
      tenants:
        acme: {enabled: true, rules: [{action: splice, pinned: [apple]}]}

Host patterns and pinned categories are checked when the Snapshot is compiled
(``arcus.policy.intercept.compile_intercept``): a reload with a bad one is refused with its line.
"""

from __future__ import annotations

from yaml.nodes import MappingNode, Node, SequenceNode

from arcus.config.schema import InterceptConfig, InterceptRule, InterceptSettings
from arcus.config.yamlnodes import Issues, Section, line_of, read_bool, read_choice, read_list, read_name, read_str

SETTING_KEYS = ("enabled", "upstream_ca", "bypass_pinned", "rules")
RULE_KEYS = ("action", "hosts", "pinned", "insecure", "name")


def parse_intercept(parent: Section) -> InterceptConfig:
    sec = parent.section("intercept", (*SETTING_KEYS, "tenants"))
    if sec is None:
        return InterceptConfig()
    box, _ = _settings(sec, InterceptSettings())
    tenants: list[tuple[str, InterceptSettings, frozenset[str]]] = []
    node = sec.value_node("tenants")
    if node is not None:
        if not isinstance(node, MappingNode):
            sec.error("expected a mapping of tenant names to settings", line_of(node), key="tenants")
        else:
            for key, value in node.value:
                where = f"intercept: tenants: {key.value}"
                try:
                    name = read_name(key)
                except Exception:  # noqa: BLE001 - BadValue: reported as one line
                    sec.error(f'invalid tenant name "{key.value}"', line_of(key), key="tenants")
                    continue
                if not isinstance(value, MappingNode):
                    sec.error("expected a mapping of settings", line_of(value), key=f"tenants: {name}")
                    continue
                tsec = Section(value, sec.issues, where, SETTING_KEYS)
                settings, keys = _settings(tsec, InterceptSettings(line=line_of(key)))
                tsec.finish()
                sec.ok = sec.ok and tsec.ok
                tenants.append((name, settings, keys))
    sec.finish()
    parent.ok = parent.ok and sec.ok
    return InterceptConfig(box=box, tenants=tuple(tenants))


def _settings(sec: Section, base: InterceptSettings) -> tuple[InterceptSettings, frozenset[str]]:
    keys = frozenset(k for k in SETTING_KEYS if sec.has(k))
    rules: tuple[InterceptRule, ...] = ()
    node = sec.value_node("rules")
    if node is not None:
        rules = _rules(sec, node)
    settings = InterceptSettings(
        enabled=sec.take("enabled", read_bool, base.enabled),
        upstream_ca=sec.take("upstream_ca", read_str, base.upstream_ca),
        bypass_pinned=sec.take("bypass_pinned", read_bool, base.bypass_pinned),
        rules=rules,
        line=base.line if base.line is not None else sec.line,
    )
    return settings, keys


def _rules(sec: Section, node: Node) -> tuple[InterceptRule, ...]:
    if not isinstance(node, SequenceNode):
        sec.error("expected a list of rules", line_of(node), key="rules")
        return ()
    out: list[InterceptRule] = []
    issues: Issues = sec.issues
    for i, item in enumerate(node.value, 1):
        if not isinstance(item, MappingNode):
            sec.error(f"rule {i}: expected a mapping (action:, hosts:, pinned:, insecure:)", line_of(item), key="rules")
            continue
        rsec = Section(item, issues, f"{sec.where}: rules: {i}", RULE_KEYS)
        action = rsec.need("action", read_choice(("intercept", "splice")))
        hosts = rsec.take("hosts", read_list(read_str), ())
        pinned = rsec.take("pinned", read_list(read_str), ())
        insecure = rsec.take("insecure", read_bool, False)
        name = rsec.take("name", read_name, "")
        if rsec.ok and not hosts and not pinned:
            rsec.error("a rule needs hosts: or pinned: (a rule for every host is the enabled: switch)")
        if rsec.ok and insecure and action != "intercept":
            rsec.error("insecure: true only goes with action: intercept", rsec.value_line("insecure"))
        rsec.finish()
        sec.ok = sec.ok and rsec.ok
        if rsec.ok and action is not None:
            out.append(InterceptRule(action, tuple(hosts), tuple(pinned), insecure, name, line_of(item)))
    return tuple(out)
