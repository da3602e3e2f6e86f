"""The escaper graph: which escapers each one hands connections to, and its cycles.

Route escapers name other escapers (``fallback: direct``); a loop among them would recurse on
every connection, so a profile with one is refused. ``next_escapers(config)`` is the edge list of
one escaper (empty for a leaf: direct and proxy escapers, ``dummy_deny``).
"""

from __future__ import annotations

from collections.abc import Iterable

from arcus.config.schema import EscaperConfig


def next_escapers(config: EscaperConfig) -> tuple[str, ...]:
    """Names ``config`` hands connections to, in its own order (route types override the property)."""
    return config.next_escapers


def edges(escapers: Iterable[EscaperConfig]) -> dict[str, tuple[str, ...]]:
    return {e.name: next_escapers(e) for e in escapers}


def find_cycle(graph: dict[str, tuple[str, ...]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]`` (in profile order of its first escaper), or None.

    Names that are not keys (dangling references, reported elsewhere) are leaves here.
    """
    WHITE, GREY, BLACK = 0, 1, 2
    color = {name: WHITE for name in graph}
    for root in graph:
        if color[root] != WHITE:
            continue
        path: list[str] = [root]
        stack = [iter(graph[root])]
        color[root] = GREY
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                color[path.pop()] = BLACK
                continue
            state = color.get(child)
            if state is None or state == BLACK:
                continue
            if state == GREY:
                return path[path.index(child):] + [child]
            color[child] = GREY
            path.append(child)
            stack.append(iter(graph[child]))
    return None


def build_order(graph: dict[str, tuple[str, ...]]) -> list[str]:
    """Every escaper after the ones it names (depth first, profile order otherwise).

    Raises ValueError naming a cycle if there is one.
    """
    cycle = find_cycle(graph)
    if cycle is not None:
        raise ValueError("escapers refer to each other in a loop: " + " -> ".join(cycle))
    order: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        # Depth is bounded by the number of escapers (no cycles).
        if name in done or name not in graph:
            return
        done.add(name)
        for child in graph[name]:
            visit(child)
        order.append(name)

    for name in graph:
        visit(name)
    return order
