"""Policies: ordered per-tenant and per-user rules compiled into a pure, fast decision.

``compile_policy(rules, guard=...)`` validates and compiles; ``Policy.decide(request)`` runs per
request on the data plane; ``explain(policy, request)`` returns the same decision with the trace
of every rule evaluated. The matchers (``hosts``, ``nets``, ``times``) are shared with routing
escapers. Nothing here does I/O or reads a clock. ``docs/policy.md`` is the operator's guide.
"""

from arcus.policy.engine import Policy, compile_policy, explain
from arcus.policy.model import (
    ACTIONS,
    DEFAULT,
    INVALID_ADDRESS,
    INVALID_HOST,
    SPECIAL_DESTINATION,
    Decision,
    Request,
    Rule,
    TraceEntry,
)

__all__ = [
    "ACTIONS",
    "DEFAULT",
    "INVALID_ADDRESS",
    "INVALID_HOST",
    "SPECIAL_DESTINATION",
    "Decision",
    "Policy",
    "Request",
    "Rule",
    "TraceEntry",
    "compile_policy",
    "explain",
]
