"""Intercept or splice: first match wins, tenant rules before the box's, the bypass list last."""

from __future__ import annotations

from arcus.config.schema import InterceptConfig, InterceptRule, InterceptSettings
from arcus.policy.intercept import NO_INTERCEPTION, PINNED, compile_intercept


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
