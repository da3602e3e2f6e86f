"""A tenant's policy: add, import, list, remove and move rules.

A rule is checked twice before it is stored: alone (every field error named), and within the
tenant's whole policy at its new position (the daemon will compile exactly that).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Mapping
from typing import Any

from arcus.errors import AlreadyExists, OperatorError
from arcus.names import validate_name
from arcus.policy import Rule, compile_policy
from arcus.store import Store

RULE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Rule))
LIST_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Rule) if f.default == ()
)  # hosts, dest_cidrs, ports, sources, methods, path_prefixes, times
RULE_DEFAULTS: dict[str, Any] = {
    f.name: (list(f.default) if f.default == () else f.default)
    for f in dataclasses.fields(Rule)
    if f.default is not dataclasses.MISSING
}
RULE_HINT = 'give at least {"id": "block-x", "action": "deny"}'


def _invalid(message: str, hint: str | None = None) -> OperatorError:
    return OperatorError(message, code="invalid", hint=hint)


def rule_from_dict(data: object) -> Rule:
    """A Rule from a rule dict (lists for tuple fields). Unknown fields and wrong shapes are an
    OperatorError naming the field; the values themselves are checked by ``compile_policy``."""
    if not isinstance(data, Mapping):
        raise _invalid(f"a rule must be an object of fields, got {type(data).__name__}", RULE_HINT)
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key not in RULE_FIELDS:
            raise _invalid(f"unknown rule field {key!r}", f"rule fields: {', '.join(RULE_FIELDS)}")
        if key in LIST_FIELDS:
            if value is None:
                value = ()
            elif isinstance(value, (list, tuple)):
                value = tuple(value)
            else:
                raise _invalid(f"rule field {key!r} must be a list, got {type(value).__name__}",
                               f'write "{key}": [{value!r}]' if isinstance(value, str) else f'write "{key}": [...]')
        fields[key] = value
    for key in ("id", "action"):
        if key not in fields:
            raise _invalid(f"a rule needs {'an' if key == 'id' else 'its'} {key}", RULE_HINT)
    return Rule(**fields)


def rule_to_dict(rule: Rule) -> dict[str, Any]:
    """The rule dict of a Rule: every field, lists where Rule has tuples (JSON-ready)."""
    return {name: (list(getattr(rule, name)) if name in LIST_FIELDS else getattr(rule, name)) for name in RULE_FIELDS}


def _shown(data: dict[str, Any], position: int) -> dict[str, Any]:
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in RULE_DEFAULTS.items()}
    out.update(data)
    out["position"] = position
    return out


def check_position(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"invalid position {value!r}", "positions start at 1 (the first rule)")
    return value


def check_alone(rule: Rule) -> Rule:
    """Compile the rule by itself: every field error, named, before the store is asked."""
    compile_policy([rule], guard=None)
    for pattern in rule.hosts:
        if not pattern.isascii():
            # Compared as given (docs/policy.md): clients send A-labels and the proxy refuses a
            # host that is not ASCII, so such a pattern never matches. Refused for a new rule
            # only: a stored one keeps loading.
            raise _invalid(
                f"rule {rule.id!r}: hosts: host pattern {pattern!r} is not ASCII: it would never match, "
                "clients send internationalized names as A-labels (xn--...)",
                _a_label_hint(pattern.strip()),
            )
    return rule


def _a_label_hint(pattern: str) -> str:
    """What to write instead: each Unicode label of a name as its A-label (lower case, NFC,
    Punycode: the IDNA 2008 form browsers send), or a general hint for a glob or regex."""
    general = "write the name in its A-label form (xn--...), as browsers send it"
    prefix = "*." if pattern.startswith("*.") else "." if pattern.startswith(".") else ""
    name = pattern[len(prefix):]
    if name.startswith("~") or "*" in name or "?" in name:
        return general
    labels = []
    for label in unicodedata.normalize("NFC", name.lower()).split("."):
        try:
            labels.append(label if label.isascii() else "xn--" + label.encode("punycode").decode("ascii"))
        except UnicodeError:
            return general
    return f"write {prefix + '.'.join(labels)!r}"


def add(store: Store, tenant: str, rule: Rule, position: int | None = None) -> dict[str, Any]:
    """Insert ``rule`` at ``position`` (1 is first; None appends) once the tenant's whole policy
    compiles with it there."""
    validate_name("tenant", tenant)
    validate_name("rule", rule.id)
    if position is not None:
        check_position(position)
    check_alone(rule)
    current = store.get_tenant(tenant)
    rules = [rule_from_dict(d) for d in store.list_rules(tenant)]
    if any(r.id == rule.id for r in rules):
        raise AlreadyExists(
            f"rule {rule.id!r} already exists in tenant {tenant}",
            hint=f"pick another id, or remove it first with `arcus policy rm {tenant} {rule.id}`",
        )
    rules.insert(len(rules) if position is None else min(position - 1, len(rules)), rule)
    compile_policy(rules, guard=None, default_action=current.default_action)
    stored_at = store.add_rule(tenant, rule_to_dict(rule), position=position)
    return {"rule": rule_to_dict(rule), "position": stored_at}


def rules_from_list(data: object) -> list[Rule]:
    """Rules from a list of rule dicts, as ``policy list --json`` prints them (a ``position``
    is ignored: the list's order is the order); each error names the rule's place in the list."""
    if not isinstance(data, list):
        raise _invalid(f"rules must be a list of rule objects, got {type(data).__name__}",
                       "give a list, as `arcus policy list TENANT --json` prints")
    out: list[Rule] = []
    for i, item in enumerate(data, start=1):
        if isinstance(item, Mapping):
            item = {k: v for k, v in item.items() if k != "position"}
        try:
            out.append(rule_from_dict(item))
        except OperatorError as exc:
            raise _invalid(f"rule {i} of {len(data)}: {exc.message}", exc.hint) from None
    return out


def import_rules(store: Store, tenant: str, rules: list[Rule]) -> dict[str, Any]:
    """Append ``rules`` to the tenant's policy as one change: each checked alone, their ids new
    and distinct, the whole policy compiled once, then all stored in one transaction or none.
    What a list of ``add`` calls would do, without compiling the growing policy at every one."""
    validate_name("tenant", tenant)
    if not rules:
        raise _invalid("no rules to import", "give a list of rules, as `arcus policy list TENANT --json` prints")
    seen: set[str] = set()
    for rule in rules:
        validate_name("rule", rule.id)
        check_alone(rule)
        if rule.id in seen:
            raise AlreadyExists(f"rule {rule.id!r} is in the import twice", hint="give each rule its own id")
        seen.add(rule.id)
    current = store.get_tenant(tenant)
    existing = [rule_from_dict(d) for d in store.list_rules(tenant)]
    clash = [r.id for r in existing if r.id in seen]
    if clash:
        raise AlreadyExists(
            f"tenant {tenant} already has rule {clash[0]!r}" + (f" (and {len(clash) - 1} more of the import's ids)" if len(clash) > 1 else ""),
            hint="give the imported rules other ids, or remove the tenant's first (`arcus policy rm`)",
        )
    compile_policy([*existing, *rules], guard=None, default_action=current.default_action)
    first = store.add_rules(tenant, [rule_to_dict(r) for r in rules])
    return {"imported": len(rules), "first_position": first, "rules": len(existing) + len(rules)}


def list_rules(store: Store, tenant: str) -> list[dict[str, Any]]:
    """The rules in the order they are read, each with its 1-based position."""
    validate_name("tenant", tenant)
    return [_shown(d, i) for i, d in enumerate(store.list_rules(tenant), start=1)]


def remove(store: Store, tenant: str, rule_id: str) -> dict[str, Any]:
    validate_name("tenant", tenant)
    validate_name("rule", rule_id)
    store.remove_rule(tenant, rule_id)
    return {"removed": rule_id}


def move(store: Store, tenant: str, rule_id: str, position: int) -> list[dict[str, Any]]:
    """Move a rule; returns the new order."""
    validate_name("tenant", tenant)
    validate_name("rule", rule_id)
    store.move_rule(tenant, rule_id, check_position(position))
    return list_rules(store, tenant)
