"""Intercept or splice: first match wins, tenant rules before the box's, the bypass list last."""

from __future__ import annotations

import pytest

from arcus.config.schema import InterceptConfig, InterceptRule, InterceptSettings
from arcus.policy.intercept import NO_INTERCEPTION, PINNED, Decision, compile_intercept


def plan(box_rules=(), tenant_rules=(), *, bypass=True, box_on=True):
    box = InterceptSettings(enabled=box_on, rules=tuple(box_rules))
    acme = InterceptSettings(enabled=True, rules=tuple(tenant_rules))
    return compile_intercept(InterceptConfig(box=box, tenants=(("acme", acme, frozenset({"enabled", "rules"})),)))


def test_nothing_is_intercepted_by_default():
    assert not NO_INTERCEPTION.any and NO_INTERCEPTION.for_tenant("acme") is None
    p = plan(box_on=False)
    assert p.for_tenant("other") is None and p.for_tenant("acme") is not None


def test_first_match_wins_tenant_rules_first_then_box_then_pinned_then_intercept():
    p = plan(
        box_rules=[InterceptRule("splice", hosts=(".example.com",), name="box-splice")],
        tenant_rules=[InterceptRule("intercept", hosts=("www.example.com",), name="acme-in"),
                      InterceptRule("intercept", pinned=("dropbox",), name="acme-dropbox")],
    )
    acme = p.for_tenant("acme")
    assert acme.decide("WWW.Example.com.").rule == "acme-in" and acme.decide("www.example.com").intercept
    assert acme.decide("api.example.com").rule == "box-splice" and not acme.decide("api.example.com").intercept
    assert acme.decide("www.dropbox.com").rule == "acme-dropbox"  # a rule beats the bypass list
    assert acme.decide("a.push.apple.com").rule == "pinned:apple"
    assert acme.decide("news.test").rule == "default" and acme.decide(None).intercept
    other = p.for_tenant("other")
    assert other.decide("www.example.com").rule == "box-splice"
    assert other.decide("www.dropbox.com").rule == "pinned:dropbox"


def test_every_pinned_category_splices_its_hosts():
    acme = plan().for_tenant("acme")
    for cat, hosts in PINNED.items():
        host = hosts[0].lstrip(".")
        d = acme.decide(host)
        assert not d.intercept and d.rule == f"pinned:{cat}", (cat, host, d)


def test_globs_and_regexes_match_and_the_answer_is_cached():
    acme = plan(tenant_rules=[InterceptRule("splice", hosts=("*casino*", "~ads[0-9]+\\.test"), name="slow")]).for_tenant("acme")
    assert acme.decide("bigcasino.example").rule == "slow"
    assert acme.decide("ads12.test").rule == "slow"
    assert acme.decide("ads.test").rule == "default"
    assert acme.decide("ads12.test") is acme.decide("ads12.test")


# The store's switch (`arcus tenant set T --intercept on|off`) against the profile's enabled:.

SPLICE_BANK = InterceptRule("splice", hosts=(".bank.example",), name="box-bank")
ACME_LAB = InterceptRule("intercept", hosts=("lab.acme.test",), insecure=True, name="acme-lab")


def profile(*, box_on: bool, acme_on: bool | None, acme_bypass: bool | None = None) -> InterceptConfig:
    """The box with one rule and its CA; acme named with its own rule and CA, and ``enabled:``
    only when ``acme_on`` is given."""
    keys = {"rules", "upstream_ca"} | ({"enabled"} if acme_on is not None else set())
    if acme_bypass is not None:
        keys.add("bypass_pinned")
    acme = InterceptSettings(enabled=bool(acme_on), upstream_ca="/acme.pem", rules=(ACME_LAB,),
                             bypass_pinned=acme_bypass if acme_bypass is not None else True)
    box = InterceptSettings(enabled=box_on, upstream_ca="/box.pem", rules=(SPLICE_BANK,))
    return InterceptConfig(box=box, tenants=(("acme", acme, frozenset(keys)),))


@pytest.mark.parametrize("box_on", [False, True])
@pytest.mark.parametrize("acme_on", [None, False, True])
@pytest.mark.parametrize("switch", [None, False, True])
def test_the_store_switch_overrides_enabled_and_nothing_else(box_on, acme_on, switch):
    switches = {} if switch is None else {"acme": switch, "globex": switch}
    p = compile_intercept(profile(box_on=box_on, acme_on=acme_on), switches)
    profile_says = box_on if acme_on is None else acme_on
    acme = p.for_tenant("acme")
    assert (acme is not None) == (profile_says if switch is None else switch)
    if acme is not None:  # the profile's rules, bypass list and CA for acme, whoever switched it on
        assert acme.upstream_ca == "/acme.pem"
        assert acme.decide("lab.acme.test").rule == "acme-lab" and acme.decide("lab.acme.test").insecure
        assert acme.decide("www.bank.example").rule == "box-bank"
        assert acme.decide("a.push.apple.com").rule == "pinned:apple"
        assert acme.decide("news.test") == Decision(True, "default")
    # globex is not named in the profile: the box's enabled:, rules, bypass list and CA
    globex = p.for_tenant("globex")
    assert (globex is not None) == (box_on if switch is None else switch)
    if globex is not None:
        assert globex.upstream_ca == "/box.pem"
        assert globex.decide("lab.acme.test").rule == "default"
        assert globex.decide("www.bank.example").rule == "box-bank"
        assert globex.decide("a.push.apple.com").rule == "pinned:apple"
    # a tenant without a switch still follows the profile
    assert (p.for_tenant("initech") is not None) == box_on
    assert p.any == (acme is not None or globex is not None or box_on)
    assert p.switches == switches


def test_a_tenant_switched_on_keeps_its_own_bypass_setting():
    p = compile_intercept(profile(box_on=False, acme_on=False, acme_bypass=False), {"acme": True})
    assert p.for_tenant("acme").decide("a.push.apple.com").rule == "default"


def test_switches_alone_make_a_plan_that_intercepts():
    p = compile_intercept(InterceptConfig(), {"acme": True, "globex": False})
    assert p.any and p.for_tenant("acme") is not None
    assert p.for_tenant("globex") is None and p.for_tenant("other") is None
    assert not compile_intercept(InterceptConfig(), {"globex": False}).any
