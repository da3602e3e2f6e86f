"""Connection slots and the gate's tenant moves (issue 10 #3), without sockets."""

from __future__ import annotations

import asyncio

from arcus.auth.credcache import CredentialCache, FailureThrottle
from arcus.auth.secrets import hash_secret
from arcus.auth.verifier import Verifier
from arcus.errors import ErrorCode, Refusal
from arcus.tenancy.admission import Destination, Gate, Slots
from arcus.tenancy.identify import Claims
from arcus.tenancy.views import BOX, Limits, LimitSpec, Scope, UserView
from tests.unit.tenancy.test_identify import tenancy as base_tenancy


def test_slots_move_take_new_first_and_release_old_once() -> None:
    a, b = Limits(LimitSpec(max_conns=1)), Limits(LimitSpec(max_conns=1))
    limits = {Scope.tenant("a"): a, Scope.tenant("b"): b, BOX: Limits(LimitSpec())}
    s1, s2 = Slots(limits), Slots(limits)
    assert s1.take(BOX) and s1.take(Scope.tenant("a"))
    assert (a.conns.active, b.conns.active) == (1, 0)
    assert s1.take(Scope.tenant("a"))  # already held: nothing changes
    assert s1.take(Scope.tenant("b")) and (a.conns.active, b.conns.active) == (0, 1)
    assert not s2.take(Scope.tenant("b"))  # full: the old slot (none) is kept
    assert s2.take(Scope.tenant("a")) and not s2.take(Scope.tenant("b")) and a.conns.active == 1
    assert s2.holds("tenant") == Scope.tenant("a")
    assert s1.take(Scope.tenant("unlimited")) and b.conns.active == 0 and s1.holds("tenant") is None
    s1.release()
    s2.release()
    s2.release()
    assert (a.conns.active, b.conns.active) == (0, 0)


class FakeShared:
    def __init__(self, limits) -> None:
        self.limits = limits
        self.credcache = CredentialCache()
        self.throttle = FailureThrottle()
        self.verifier = Verifier(self.credcache, self.throttle)
        self.rehash = None


def _snap(max_conns: int):
    import dataclasses

    t = base_tenancy()
    secret = hash_secret("pw")
    bob = UserView("globex", "bob", secret, False, None, LimitSpec())
    globex = dataclasses.replace(t.tenants["globex"], users={"bob": bob}, limits=LimitSpec(max_conns=max_conns))
    tenants = {**t.tenants, "globex": globex}
    return type("Snap", (), {"tenancy": dataclasses.replace(t, tenants=tenants, any_users=True)})()


def test_switching_tenant_by_credentials_takes_a_slot_in_the_new_tenant() -> None:
    async def main() -> None:
        snap = _snap(max_conns=1)
        limits = {Scope.tenant("globex"): Limits(LimitSpec(max_conns=1))}
        shared = FakeShared(limits)
        results: list = []
        dest = Destination("example.com", 80, "GET", "/", False)
        gates = []
        for _ in range(2):
            gate = Gate(shared, snap.tenancy.by_source("10.1.0.5"))  # an acme client
            assert gate.hold_connection() is None
            done = asyncio.get_running_loop().create_future()
            gate.check(snap, Claims("10.1.0.5", username="bob@globex", password="pw"), dest, done.set_result)
            results.append(await asyncio.wait_for(done, 10))
            gates.append(gate)
        assert not isinstance(results[0], Refusal) and gates[0].tenant.name == "globex"
        assert isinstance(results[1], Refusal) and results[1].code is ErrorCode.TENANT_CONN_LIMIT
        assert limits[Scope.tenant("globex")].conns.active == 1
        # back to no credentials: the request is acme's and nobody's, the globex slot is freed
        done = asyncio.get_running_loop().create_future()
        gates[0].check(snap, Claims("10.1.0.5"), dest, done.set_result)
        assert not isinstance(await done, Refusal)
        assert (gates[0].tenant.name, gates[0].user) == ("acme", None)
        assert limits[Scope.tenant("globex")].conns.active == 0
        for g in gates:
            g.close()

    asyncio.run(main())


def test_allow_rule_with_dest_cidrs_opens_an_ip_literal_special_destination() -> None:
    """docs/policy.md: an allow rule whose dest_cidrs hold a special-purpose address opens it.
    A name resolving to ::1 was opened (the escaper asked the rule again per address); the
    literal [::1] got no per-address check, so the escaper's egress guard refused it anyway
    (403 builtin:special-destination from an off-box client, while `policy explain` said allow)."""
    import types

    from arcus.policy.engine import compile_policy
    from arcus.policy.model import Rule
    from arcus.tenancy.admission import Admitted, admit
    from arcus.tenancy.views import TenantView

    rules = [Rule("open-lb", "allow", dest_cidrs=("::1/128", "127.0.0.0/8"))]
    tv = TenantView("acme", policy=compile_policy(rules, guard=None), explicit_ids=frozenset({"open-lb"}))
    snap = types.SimpleNamespace(tenancy=types.SimpleNamespace(any_limits=False))
    for host, addr in (("::1", "::1"), ("127.0.0.1", "127.0.0.1"), ("opened.example", "::1")):
        for tunnel in (False, True):
            dest = Destination(host, 8080, "CONNECT" if tunnel else "GET", None if tunnel else "/", tunnel)
            verdict = admit(None, snap, tv, None, dest, "fd99::2")
            assert isinstance(verdict, Admitted), (host, verdict)
            assert verdict.check is not None and verdict.check(addr) is True, (host, tunnel)
