"""Micro-benchmark of the policy engine (not a test): decisions per second for 10, 100, 1000 rules.

Run: .venv/bin/python bench/policy_micro.py [--seconds S]

Why it exists: ``Policy.decide()`` runs once per request (and once more per resolved address
when the outcome depends on it), so its cost is part of every request's. The policies here are
shaped like real ones: mostly host block lists (exact names and child domains, three patterns a
rule), some globs and regexes, some address and port rules, a working-hours rule with a time
zone, a report rule. Requests mix hosts that hit, hosts that miss, literal addresses and
resolved addresses. Figures are the best of several rounds in process CPU time.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arcus.policy import Request, Rule, compile_policy  # noqa: E402 - after the path tweak
from arcus.policy.egress import EgressGuard  # noqa: E402


def make_rules(n: int) -> list[Rule]:
    rules = []
    for i in range(n):
        kind = i % 20
        if kind < 14:
            hosts = (f"site{i}.example", f".dom{i}.example", f"*.cdn{i}.example")
            rules.append(Rule(f"hosts-{i}", "deny", hosts=hosts))
        elif kind == 14:
            rules.append(Rule(f"glob-{i}", "deny", hosts=(f"*bad{i}*",)))
        elif kind == 15:
            rules.append(Rule(f"regex-{i}", "deny", hosts=(rf"~ads{i}[0-9]*\.example\.net",)))
        elif kind == 16:
            rules.append(Rule(f"net-{i}", "deny", dest_cidrs=(f"10.{i % 256}.0.0/16",), ports=("22", "3389")))
        elif kind == 17:
            rules.append(Rule(f"hours-{i}", "deny", hosts=(f".social{i}.example",),
                              times=("mon-fri 08:00-18:00",), timezone="Europe/Paris"))
        elif kind == 18:
            rules.append(Rule(f"report-{i}", "report", hosts=(f".new{i}.example",)))
        else:
            rules.append(Rule(f"admin-{i}", "deny", sources=(f"192.168.{i % 256}.0/24",),
                              methods=("POST", "PUT"), path_prefixes=("/admin/",)))
    return rules


def make_requests(n: int) -> list[Request]:
    now = datetime(2024, 5, 7, 9, 30, tzinfo=timezone.utc)
    reqs = []
    for j in range(64):
        i = (j * 7) % n
        if j % 4 == 0:
            host = f"www.dom{i}.example"  # may hit a child rule
        elif j % 4 == 1:
            host = f"www.unlisted{j}.example"  # misses every host rule
        elif j % 4 == 2:
            host = f"api{j}.service.internal"
        else:
            host = "93.184.216.34"
        dest = None if j % 3 else f"93.184.{j}.34"
        reqs.append(Request(host, 443, "10.20.1.7", now=now, method="GET", path="/index.html", dest_ip=dest))
    return reqs


def measure(n: int, seconds: float) -> float:
    policy = compile_policy(make_rules(n), guard=EgressGuard())
    reqs = make_requests(n)
    decide = policy.decide
    best = 0.0
    deadline = time.process_time() + seconds
    rounds = 0
    while rounds < 3 or (time.process_time() < deadline and rounds < 1000):
        rounds += 1
        start = time.process_time()
        for _ in range(50):
            for req in reqs:
                decide(req)
        spent = time.process_time() - start
        if spent > 0:
            best = max(best, 50 * len(reqs) / spent)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per size (default 1)")
    args = parser.parse_args()
    for n in (10, 100, 1000):
        rate = measure(n, args.seconds)
        print(f"{n:>5} rules: {rate:>12,.0f} decisions/s  ({1e6 / rate:.2f} µs each)")


if __name__ == "__main__":
    main()
