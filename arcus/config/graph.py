"""The topology of a profile: which object refers to which, as a text tree or Graphviz dot.

Objects refer to each other by name (``escaper: route``, ``resolver: dns``); the loader
records every such reference (``ObjectSection.reference``), and this module turns them into
a graph: servers -> escapers -> (escapers ...) -> resolvers. ``arcus config graph`` prints it,
and the loader asks it for cycles (a route escaper that leads back to itself would loop
forever at the first request), which ``config check`` rejects with file:line.

Pure: no YAML, no I/O, nothing about any one type. A type that refers to other objects only
needs to record its references; the graph, the cycle check and both renderings follow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from arcus.config.objects import Item

NodeId = tuple[str, str]  # (family, name)

_SHAPES = {"server": "box", "escaper": "ellipse", "resolver": "hexagon"}


@dataclass(frozen=True, slots=True)
class Node:
    family: str  # "server", "escaper", "resolver"
    name: str
    type: str  # the ``type:`` value, "?" when the object did not parse
    line: int
    detail: str = ""  # shown after the type: a server's listen addresses

    @property
    def id(self) -> NodeId:
        return (self.family, self.name)

    def label(self) -> str:
        extra = f", {self.detail}" if self.detail else ""
        return f"{self.family} {self.name} ({self.type}{extra})"


@dataclass(frozen=True, slots=True)
class Edge:
    source: NodeId
    target: NodeId
    key: str  # the key holding the reference ("escaper", "next", "rules[0].escaper" ...)
    line: int  # where the reference is written


@dataclass(frozen=True, slots=True)
class Cycle:
    """References that lead from an object back to itself, in order; ``edges[0]`` starts earliest in the file."""

    edges: tuple[Edge, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.source[1] for e in self.edges) + (self.edges[0].source[1],)


@dataclass(frozen=True, slots=True)
class Topology:
    nodes: tuple[Node, ...]  # families in profile order, objects in file order
    edges: tuple[Edge, ...]  # in file order within each object

    # ------------------------------------------------------------------ building

    @classmethod
    def from_items(cls, parsed: Mapping[str, Sequence[Item]], details: Mapping[NodeId, str] | None = None) -> Topology:
        """From the loader's parsed objects; a reference left out defaults as the loader does it.

        A reference to an object that is not defined is left out (the loader reports it).
        """
        details = details or {}
        nodes: list[Node] = []
        defined: dict[str, list[str]] = {}
        for family, items in parsed.items():
            names = defined.setdefault(family, [])
            for item in items:
                if item.name is None or item.name in names:
                    continue
                names.append(item.name)
                kind = item.config.type if item.config is not None else "?"  # every family's config has a type
                nodes.append(Node(family, item.name, kind, item.name_line, details.get((family, item.name), "")))
        edges: list[Edge] = []
        for family, items in parsed.items():
            seen: set[str] = set()
            for item in items:
                if item.name is None or item.name in seen:
                    continue  # a duplicate's references belong to no node (the loader reports it)
                seen.add(item.name)
                for ref in item.refs:
                    candidates = defined.get(ref.family, [])
                    target = ref.name if ref.name is not None else (candidates[0] if len(candidates) == 1 else None)
                    if target is None or target not in candidates:
                        continue
                    edges.append(Edge((family, item.name), (ref.family, target), ref.key, ref.line))
        return cls(tuple(nodes), tuple(edges))

    # ------------------------------------------------------------------ reading

    def node(self, node_id: NodeId) -> Node:
        return self._index()[node_id]

    def children(self, node_id: NodeId) -> list[Edge]:
        return [e for e in self.edges if e.source == node_id]

    def _index(self) -> dict[NodeId, Node]:
        return {n.id: n for n in self.nodes}

    def cycles(self) -> list[Cycle]:
        """One cycle per group of objects that reach each other (within one family), earliest first.

        Only references from a family to the same family can loop (escaper -> escaper);
        every object of a strongly connected group is reported through one cycle of it.
        """
        order = {n.id: i for i, n in enumerate(self.nodes)}
        succ: dict[NodeId, list[Edge]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            if e.source[0] == e.target[0] and e.source in succ and e.target in succ:
                succ[e.source].append(e)
        found: list[Cycle] = []
        for group in _strong_components(list(succ), succ):
            members = set(group)
            start = min(group, key=order.__getitem__)
            if len(group) == 1 and not any(e.target == start for e in succ[start]):
                continue
            found.append(Cycle(_path_back(start, members, succ)))
        found.sort(key=lambda c: order[c.edges[0].source])
        return found

    # ------------------------------------------------------------------ rendering

    def to_text(self) -> str:
        """Each server with the tree of what it leads to; objects no server reaches after them.

        An object met a second time is not expanded again ("shown above"), so a shared
        escaper costs one line per use, not its whole subtree.
        """
        index = self._index()
        kids: dict[NodeId, list[Edge]] = {n.id: [] for n in self.nodes}
        for e in self.edges:
            kids[e.source].append(e)
        lines: list[str] = []
        expanded: set[NodeId] = set()
        reached: set[NodeId] = set()

        def walk(root: NodeId) -> None:
            # Iterative, children in order: a long chain of escapers must not hit the recursion limit.
            stack: list[tuple[NodeId, str, str | None]] = [(root, "", None)]
            while stack:
                node_id, prefix, key = stack.pop()
                node = index[node_id]
                edges = kids[node_id]
                label = node.label()
                if key is not None and key != node.family:
                    label += f" [{key}]"
                if edges and node_id in expanded:
                    lines.append(f"{prefix}{label} (shown above)")
                    continue
                lines.append(prefix + label)
                reached.add(node_id)
                expanded.add(node_id)
                child_prefix = _continue(prefix)
                for i in range(len(edges) - 1, -1, -1):
                    mark = "└── " if i == len(edges) - 1 else "├── "
                    stack.append((edges[i].target, child_prefix + mark, edges[i].key))

        roots = [n for n in self.nodes if n.family == "server"]
        for root in roots:
            walk(root.id)
        rest = [n for n in self.nodes if n.id not in reached and n.family != "server"]
        # Objects no server reaches: the tops of their own trees first, then what is left.
        targets = {e.target for e in self.edges}
        if rest:
            if lines:
                lines.append("")
            lines.append("not used by any server:")
            for node in rest:
                if node.id not in reached and node.id not in targets:
                    walk(node.id)
            for node in rest:
                if node.id not in reached:
                    walk(node.id)
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        """Graphviz: one node per object (box server, ellipse escaper, hexagon resolver), edges labelled by key."""
        out = ["digraph arcus {", "  rankdir=LR;", '  node [fontname="Helvetica"];', '  edge [fontname="Helvetica"];']
        for node in self.nodes:
            text = f"{node.name}\\n{node.type}" + (f"\\n{_escape(node.detail)}" if node.detail else "")
            shape = _SHAPES.get(node.family, "box")
            out.append(f'  "{_dot_id(node.id)}" [label="{text}", shape={shape}];')
        for e in self.edges:
            attrs = "" if e.key == e.target[0] else f' [label="{_escape(e.key)}"]'
            out.append(f'  "{_dot_id(e.source)}" -> "{_dot_id(e.target)}"{attrs};')
        out.append("}")
        return "\n".join(out) + "\n"

    def to_dict(self) -> dict[str, list[dict[str, object]]]:
        """Plain data for ``--json``."""
        return {
            "nodes": [{"family": n.family, "name": n.name, "type": n.type, "line": n.line} for n in self.nodes],
            "edges": [
                {"from": list(e.source), "to": list(e.target), "key": e.key, "line": e.line} for e in self.edges
            ],
        }


def _continue(prefix: str) -> str:
    """The prefix of a node's children: its own branch mark becomes a line or blank."""
    if prefix.endswith("├── "):
        return prefix[:-4] + "│   "
    if prefix.endswith("└── "):
        return prefix[:-4] + "    "
    return prefix + "    " if prefix else ""


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _dot_id(node_id: NodeId) -> str:
    return _escape(f"{node_id[0]}/{node_id[1]}")


def _strong_components(nodes: Iterable[NodeId], succ: Mapping[NodeId, list[Edge]]) -> list[list[NodeId]]:
    """Tarjan's algorithm, iterative (a long chain of escapers must not hit the recursion limit)."""
    index: dict[NodeId, int] = {}
    low: dict[NodeId, int] = {}
    stack: list[NodeId] = []
    on_stack: set[NodeId] = set()
    groups: list[list[NodeId]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[NodeId, int]] = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            edges = succ[v]
            if i < len(edges):
                work.append((v, i + 1))
                w = edges[i].target
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                group: list[NodeId] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                groups.append(group)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return groups


def _path_back(start: NodeId, members: set[NodeId], succ: Mapping[NodeId, list[Edge]]) -> tuple[Edge, ...]:
    """The shortest chain of references from ``start`` back to it, within its group (breadth first)."""
    came: dict[NodeId, Edge] = {}
    queue: deque[NodeId] = deque([start])
    while queue:
        v = queue.popleft()
        for e in succ[v]:
            if e.target not in members:
                continue
            if e.target == start:
                path = [e]
                while path[0].source != start:
                    path.insert(0, came[path[0].source])
                return tuple(path)
            if e.target not in came:
                came[e.target] = e
                queue.append(e.target)
    raise AssertionError("a strongly connected group always leads back")  # pragma: no cover
