"""Tenancy: who a request belongs to and whether it may leave.

- ``views``: tenants, users, limit specs and live limiters keyed by a typed ``Scope``;
- ``directory``: the Snapshot's one tenant directory (by name, source address, proxy host);
- ``identify``: the identification order, in one pure function;
- ``admission``: the one entry point (``Gate``) for credentials, slots, suspension, rate,
  shaping and policy.

Sits below ``serve`` and above ``auth``, ``policy`` and ``limit``.
"""
