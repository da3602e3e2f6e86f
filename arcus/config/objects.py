"""Named, typed objects of a profile: servers, escapers, resolvers (and later user groups, auditors).

Each family is a list of mappings with ``name:`` and ``type:``; the type selects a parser from
the family's registry (``arcus/config/server/__init__.py`` and siblings), one module per type,
named like the ``type:`` value, as g3 does. A type module declares the keys it accepts and
parses them one at a time; objects refer to each other by name, and those references are
recorded here and checked once the whole profile is read (``arcus.config.loader``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, SequenceNode

from arcus.config.schema import HttpLimits, Timeouts
from arcus.config.yamlnodes import Issues, Section, line_of, read_name, read_str, suggest


@dataclass(frozen=True, slots=True)
class Context:
    """What a type parser may need beyond its own mapping: the profile-wide defaults."""

    issues: Issues
    timeouts: Timeouts
    limits: HttpLimits


@dataclass(frozen=True, slots=True)
class Reference:
    """``key: name`` inside an object, naming an object of ``family``.

    ``name`` is None when the key was left out and the loader may default it to the only
    object of that family (``escaper.resolver`` when exactly one resolver exists).
    """

    family: str
    key: str
    name: str | None
    line: int


class ObjectSection(Section):
    """The mapping of one named object: a Section that also records references to other objects."""

    def __init__(self, node: MappingNode, issues: Issues, where: str, known: tuple[str, ...]) -> None:
        super().__init__(node, issues, where, known)
        self.refs: list[Reference] = []

    def reference(self, key: str, family: str, *, required: bool) -> str | None:
        """Read ``key`` as the name of a ``family`` object and record the reference."""
        if not self.has(key):
            if required:
                self.need(key, read_name)  # records "missing key"
            else:
                self.value_node(key)
                self.refs.append(Reference(family, key, None, self.line))
            return None
        name = self.need(key, read_name)
        if name is not None:
            self.refs.append(Reference(family, key, name, self.value_line(key)))
        return name


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """One ``type:`` of a family: the keys it accepts (besides name and type) and its parser.

    ``parse(section, context, name)`` reads every key it uses, runs its cross-field check, and
    returns the config object, or None when ``section.ok`` is False.
    """

    keys: tuple[str, ...]
    parse: Callable[[ObjectSection, Context, str], Any]


@dataclass(frozen=True, slots=True)
class Family:
    name: str  # "server": used in messages and references
    plural: str  # "servers": the top-level key
    types: Mapping[str, TypeSpec]


@dataclass(slots=True)
class Item:
    """One parsed object, kept even when broken so its name still counts as defined."""

    family: str
    index: int
    name: str | None
    name_line: int
    config: Any | None
    where: str
    refs: list[Reference] = field(default_factory=list)
    key_lines: dict[str, int] = field(default_factory=dict)


BASE_KEYS = ("name", "type")


def parse_family(node: Node | None, family: Family, ctx: Context) -> list[Item]:
    """Parse the list under ``family.plural``; every error is added to ``ctx.issues``."""
    issues = ctx.issues
    if node is None:
        return []
    if not isinstance(node, SequenceNode):
        issues.add(line_of(node), f"{family.plural}: expected a list of {family.plural} (- name: ...)")
        return []
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for index, element in enumerate(node.value):
        label = f"{family.plural}[{index}]"
        if not isinstance(element, MappingNode):
            issues.add(line_of(element), f"{label}: expected a mapping with name: and type:")
            continue
        sec = ObjectSection(element, issues, label, BASE_KEYS)
        name = sec.need("name", read_name)
        if name is not None:
            sec.where = f'{family.name} "{name}"'
        item = Item(family.name, index, name, sec.key_line("name"), None, sec.where)
        if name is not None:
            if name in first_line:
                issues.add(item.name_line, f'duplicate {family.name} name "{name}" (first at line {first_line[name]})')
            else:
                first_line[name] = item.name_line
        declared = sec.need("type", read_str)
        spec = family.types.get(declared) if declared is not None else None
        if declared is not None and spec is None:
            guess = suggest(declared, family.types)
            hint = f' did you mean "{guess}"?' if guess else ""
            sec.error(f'unknown type "{declared}";{hint} known {family.name} types: {", ".join(family.types)}',
                      sec.value_line("type"))
        if spec is not None:
            sec.known = BASE_KEYS + spec.keys
            config = spec.parse(sec, ctx, name or "")
            sec.finish()
            item.config = config if sec.ok and name is not None else None
        item.refs = sec.refs
        item.key_lines = {key: sec.value_line(key) for key in sec.known if sec.has(key)}
        items.append(item)
    return items
