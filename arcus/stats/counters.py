"""Counters kept per server and per tenant; they outlive Snapshots (a reload keeps them)."""

from __future__ import annotations

from collections import Counter


class Counters:
    __slots__ = ("conns_total", "conns_active", "requests", "bytes_up", "bytes_down", "errors")

    def __init__(self) -> None:
        self.conns_total = 0
        self.conns_active = 0
        self.requests = 0
        self.bytes_up = 0  # client -> upstream
        self.bytes_down = 0  # upstream -> client
        self.errors: Counter[str] = Counter()

    def to_dict(self) -> dict:
        return {
            "conns_total": self.conns_total,
            "conns_active": self.conns_active,
            "requests": self.requests,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "errors": dict(self.errors),
        }


class CounterSet:
    """name -> Counters, created on first use."""

    __slots__ = ("_by_name",)

    def __init__(self) -> None:
        self._by_name: dict[str, Counters] = {}

    def get(self, name: str) -> Counters:
        c = self._by_name.get(name)
        if c is None:
            c = self._by_name[name] = Counters()
        return c

    def items(self) -> list[tuple[str, Counters]]:
        """``(name, Counters)`` in the order the names were first seen."""
        return list(self._by_name.items())

    def to_dict(self) -> dict[str, dict]:
        return {name: c.to_dict() for name, c in sorted(self._by_name.items())}
