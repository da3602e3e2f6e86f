"""A tenant's ordered policy rules: the rows, and the statements that read and write them.

A rule is kept as the JSON of :class:`arcus.policy.Rule`'s fields (tuples as lists), in a dense
1-based order shared by tenant and user rules. The store checks only what it relies on itself
(a dict that JSON can carry, a valid ``id`` unique in the tenant, a ``user`` that exists); the
runtime compiles the whole policy with the rule before it asks the store to keep it, so that
a rule the policy engine would refuse never reaches a Snapshot. ``arcus.policy`` is not
imported here: it sits on the same layer as the store.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from arcus.errors import AlreadyExists, NotFound, OperatorError
from arcus.names import validate_name
from arcus.store import history, values
from arcus.store.tenants import tenant_id

MAX_RULE_JSON = 65_536
MAX_RULES = 100_000


def not_found(tenant: str, rule_id: str) -> NotFound:
    return NotFound(
        f"rule {rule_id!r} does not exist in tenant {tenant!r}", hint=f"see `arcus policy list {tenant}`"
    )


def check_rule(rule: object) -> tuple[dict[str, Any], str]:
    """The rule as it will be stored and its JSON text; OperatorError when the store cannot keep it."""
    if not isinstance(rule, dict):
        raise values.invalid(f"a rule must be a mapping of fields, got {type(rule).__name__}",
                             "give at least {\"id\": ..., \"action\": ...}")
    for key in rule:
        if not isinstance(key, str):
            raise values.invalid(f"rule field names must be text, got {key!r}", "name fields as arcus.policy.Rule does")
    rule_id = rule.get("id")
    if not isinstance(rule_id, str):
        raise values.invalid("a rule needs an id", "give \"id\": a name such as block-gambling")
    validate_name("rule", rule_id)
    user = rule.get("user")
    if user is not None:
        if not isinstance(user, str):
            raise values.invalid(f"rule {rule_id!r}: user must be a user name, got {type(user).__name__}",
                                 "give the name of one of the tenant's users, or null for a tenant rule")
        validate_name("user", user)
    try:
        text = json.dumps(rule, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise values.invalid(f"rule {rule_id!r} cannot be stored: {exc}",
                             "use only text, numbers, true/false, null and lists of them") from None
    if len(text) > MAX_RULE_JSON:
        raise values.invalid(f"rule {rule_id!r} is too large ({len(text)} bytes of JSON, at most {MAX_RULE_JSON})",
                             "split it into several rules")
    return json.loads(text), text


def _count(conn: sqlite3.Connection, tid: int) -> int:
    return int(conn.execute("SELECT count(*) FROM policy_rules WHERE tenant_id = ?", (tid,)).fetchone()[0])


def _position(conn: sqlite3.Connection, tid: int, tenant: str, rule_id: str) -> int:
    row = conn.execute(
        "SELECT position FROM policy_rules WHERE tenant_id = ? AND rule_id = ?", (tid, rule_id)
    ).fetchone()
    if row is None:
        raise not_found(tenant, rule_id)
    return int(row[0])


def _check_position(position: object, top: int, what: str) -> int:
    if isinstance(position, bool) or not isinstance(position, int) or not 1 <= position <= top:
        raise OperatorError(f"invalid position {position!r}", code="invalid",
                            hint=f"give a position from 1 to {top} ({what})")
    return position


def select_all(conn: sqlite3.Connection, tenant: str) -> list[dict[str, Any]]:
    tid = tenant_id(conn, tenant)
    rows = conn.execute(
        "SELECT body FROM policy_rules WHERE tenant_id = ? ORDER BY position", (tid,)
    ).fetchall()
    return [json.loads(body) for (body,) in rows]


def select_every(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    """Every tenant's rules in order (a tenant without rules maps to an empty list)."""
    out: dict[str, list[dict[str, Any]]] = {
        name: [] for (name,) in conn.execute("SELECT name FROM tenants ORDER BY name")
    }
    rows = conn.execute(
        "SELECT t.name, r.body FROM policy_rules r JOIN tenants t ON t.id = r.tenant_id "
        "ORDER BY t.name, r.position"
    ).fetchall()
    for name, body in rows:
        out[name].append(json.loads(body))
    return out


def insert(conn: sqlite3.Connection, tenant: str, rule: dict[str, Any], text: str, position: int | None) -> int:
    """Insert a checked rule at ``position`` (1-based; None appends); return its position."""
    tid = tenant_id(conn, tenant)
    rule_id = rule["id"]
    user = rule.get("user")
    if user is not None and conn.execute(
        "SELECT 1 FROM users WHERE tenant_id = ? AND name = ?", (tid, user)
    ).fetchone() is None:
        raise NotFound(f"user {user!r} of tenant {tenant!r} does not exist",
                       hint=f"add the user first (`arcus user add {tenant} {user}`), then the rule")
    count = _count(conn, tid)
    if count >= MAX_RULES:
        raise values.invalid(f"tenant {tenant!r} already has {count} rules", f"at most {MAX_RULES} per tenant")
    if position is None:
        position = count + 1
    position = _check_position(position, count + 1, f"{count + 1} appends")
    if conn.execute(
        "SELECT 1 FROM policy_rules WHERE tenant_id = ? AND rule_id = ?", (tid, rule_id)
    ).fetchone() is not None:
        raise AlreadyExists(
            f"rule {rule_id!r} already exists in tenant {tenant!r}",
            hint=f"choose another id, or remove it first (`arcus policy rm {tenant} {rule_id}`)",
        )
    conn.execute(
        "UPDATE policy_rules SET position = position + 1 WHERE tenant_id = ? AND position >= ?",
        (tid, position),
    )
    conn.execute(
        "INSERT INTO policy_rules (tenant_id, rule_id, user_name, position, body) VALUES (?, ?, ?, ?, ?)",
        (tid, rule_id, user, position, text),
    )
    history.record(conn, "policy.add", tenant, {"rule": rule, "position": position})
    return position


def unlink(conn: sqlite3.Connection, tid: int, rule_id: str) -> None:
    """Delete one rule and close the gap in the order (no history row: the caller writes it)."""
    row = conn.execute(
        "SELECT position FROM policy_rules WHERE tenant_id = ? AND rule_id = ?", (tid, rule_id)
    ).fetchone()
    if row is None:
        return
    conn.execute("DELETE FROM policy_rules WHERE tenant_id = ? AND rule_id = ?", (tid, rule_id))
    conn.execute(
        "UPDATE policy_rules SET position = position - 1 WHERE tenant_id = ? AND position > ?",
        (tid, int(row[0])),
    )


def delete(conn: sqlite3.Connection, tenant: str, rule_id: str) -> None:
    tid = tenant_id(conn, tenant)
    row = conn.execute(
        "SELECT body, position FROM policy_rules WHERE tenant_id = ? AND rule_id = ?", (tid, rule_id)
    ).fetchone()
    if row is None:
        raise not_found(tenant, rule_id)
    unlink(conn, tid, rule_id)
    history.record(conn, "policy.remove", tenant, {"rule": json.loads(row[0]), "position": int(row[1])})


def move(conn: sqlite3.Connection, tenant: str, rule_id: str, position: int) -> bool:
    """Move a rule to ``position`` (1-based, within the current list); return whether it moved."""
    tid = tenant_id(conn, tenant)
    old = _position(conn, tid, tenant, rule_id)
    count = _count(conn, tid)
    new = _check_position(position, count, "the policy's length")
    if new == old:
        return False
    if new < old:
        conn.execute(
            "UPDATE policy_rules SET position = position + 1 "
            "WHERE tenant_id = ? AND position >= ? AND position < ?",
            (tid, new, old),
        )
    else:
        conn.execute(
            "UPDATE policy_rules SET position = position - 1 "
            "WHERE tenant_id = ? AND position > ? AND position <= ?",
            (tid, old, new),
        )
    conn.execute(
        "UPDATE policy_rules SET position = ? WHERE tenant_id = ? AND rule_id = ?", (new, tid, rule_id)
    )
    history.record(conn, "policy.move", tenant, {"rule_id": rule_id, "from": old, "to": new})
    return True
