"""The profile's ``intercept:`` section: values, inheritance, one bad file per error."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcus.config import load_profile
from arcus.errors import OperatorError
from arcus.runtime.snapshot import build_intercept
from tests.unit.config.test_loader import VALID, issues, write


def test_the_section_is_read_with_its_tenants(tmp_path: Path) -> None:
    text = VALID + """\
intercept:
  enabled: true
  upstream_ca: /etc/lab.pem
  rules:
    - {action: splice, hosts: [.bank.example], name: banks}
  tenants:
    acme:
      bypass_pinned: false
      rules:
        - {action: intercept, hosts: [lab.test], insecure: true}
    guests: {enabled: false}
"""
    p = load_profile(write(tmp_path, text))
    box = p.intercept.box
    assert box.enabled and box.upstream_ca == "/etc/lab.pem" and box.rules[0].name == "banks"
    (acme, s, keys), (guests, g, gkeys) = p.intercept.tenants
    assert acme == "acme" and keys == {"bypass_pinned", "rules"} and s.rules[0].insecure
    assert guests == "guests" and gkeys == {"enabled"} and not g.enabled
    plan = build_intercept(p)
    assert plan.for_tenant("guests") is None
    assert plan.for_tenant("acme").decide("lab.test").insecure
    assert plan.for_tenant("acme").decide("www.bank.example").rule == "banks"  # the box's rules follow
    assert plan.for_tenant("acme").decide("x.icloud.com").intercept  # bypass_pinned: false
    assert not plan.for_tenant("other").decide("x.icloud.com").intercept  # the box keeps the list
    assert plan.for_tenant("other").upstream_ca == "/etc/lab.pem"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("intercept:\n  enabled: yes\n", "P:16: intercept: enabled: expected true or false, got \"yes\""),
        ("intercept:\n  rules:\n    - {hosts: [a.test]}\n", 'P:17: intercept: rules: 1: missing key "action"'),
        ("intercept:\n  rules:\n    - {action: splice}\n",
         "P:17: intercept: rules: 1: a rule needs hosts: or pinned: (a rule for every host is the enabled: switch)"),
        ("intercept:\n  rules:\n    - {action: splice, hosts: [a.test], insecure: true}\n",
         "P:17: intercept: rules: 1: insecure: true only goes with action: intercept"),
        ("intercept:\n  tenants:\n    acme: {enabeld: true}\n",
         'P:17: intercept: tenants: acme: unknown key "enabeld"; did you mean "enabled"?'),
        ("intercept:\n  mode: on\n", 'P:16: intercept: unknown key "mode"; known keys: enabled, upstream_ca, bypass_pinned, rules, tenants'),
    ],
)
def test_one_bad_file_per_error(tmp_path: Path, section: str, expected: str) -> None:
    assert issues(tmp_path, VALID + section) == [expected]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{action: splice, hosts: ['a b']}", "intercept rule 1:"),
        ("{action: splice, pinned: [tiktok]}", 'intercept rule 1: unknown pinned category "tiktok"'),
    ],
)
def test_patterns_and_categories_are_checked_when_the_snapshot_is_built(tmp_path: Path, rule: str, message: str) -> None:
    p = load_profile(write(tmp_path, VALID + f"intercept:\n  enabled: true\n  rules:\n    - {rule}\n"))
    with pytest.raises(OperatorError) as info:
        build_intercept(p)
    assert str(info.value).startswith(f"{tmp_path / 'p.yaml'}:18: {message}")
