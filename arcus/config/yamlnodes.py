"""Reading a profile from YAML *nodes*, so every value keeps the line it came from.

PyYAML's constructed objects lose positions and silently keep the last of two equal keys.
We compose the document with ``SafeLoader`` (never constructing arbitrary objects), reject
duplicate keys ourselves, and read each mapping through a :class:`Section`, one key at a
time with a typed reader. A reader failure becomes a ``ConfigIssue`` and parsing goes on, so
one run reports every error in the file; whatever key nobody asked for is reported as
unknown, with a "did you mean" suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from arcus.config import values
from arcus.errors import ConfigIssue
from arcus.names import is_valid_name

T = TypeVar("T")
D = TypeVar("D")  # a default, which may be of another type than what the reader gives (None, ())

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
_TEXT_TAGS = (_STR, _INT, _FLOAT)

NAME_HINT = "use 1-63 characters from A-Z a-z 0-9 . _ - starting with a letter or digit"


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


@dataclass
class Issues:
    """Every problem found in one file, in the order found."""

    file: str
    items: list[ConfigIssue] = field(default_factory=list)

    def add(self, line: int, message: str) -> None:
        self.items.append(ConfigIssue(self.file, line, message))

    def sorted(self) -> list[ConfigIssue]:
        return sorted(self.items, key=lambda i: i.line or 0)

    def __len__(self) -> int:
        return len(self.items)


class BadValue(Exception):
    """Raised by a reader; ``problems`` are ``(node or None, message)``, None meaning the value itself."""

    def __init__(self, message: str | None = None, node: Node | None = None,
                 problems: list[tuple[Node | None, str]] | None = None) -> None:
        self.problems = problems if problems is not None else [(node, message or "invalid value")]
        super().__init__("; ".join(m for _, m in self.problems))


Reader = Callable[[Node], T]


# --- composing -----------------------------------------------------------------------------


def compose(text: str, issues: Issues) -> Node | None:
    """The document's root node, or None (after adding an issue) when the YAML is unreadable."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line, message = _syntax_error(exc, text)
        issues.add(line, message)
        return None
    except yaml.reader.ReaderError as exc:
        issues.add(text.count("\n", 0, exc.position) + 1,
                   f"invalid YAML: unacceptable character #x{exc.character:04x}")
        return None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error we know is marked
        issues.add(1, f"invalid YAML: {exc}")
        return None
    if root is not None:
        _check_duplicate_keys(root, issues)
    return root


# Constructs PyYAML reads to their end before it can tell they are broken: the error surfaces
# where reading stopped (often the end of the file), the fault is where the construct began.
_OPENED = {
    "while scanning a quoted scalar": "close the quote opened",
    "while parsing a flow mapping": 'close the "{" opened',
    "while parsing a flow sequence": 'close the "[" opened',
    "while scanning a simple key": 'add the ":" after the key begun',
    "while scanning a block scalar": "fix the block scalar begun",
}


def _syntax_error(exc: yaml.MarkedYAMLError, text: str) -> tuple[int, str]:
    """The line to fix and the message of a YAML syntax error.

    PyYAML marks where it noticed the problem. For a quoted string, a flow collection or a key
    that never ends, that is where it gave up (``{a: 1`` on line 7 is noticed at line 9); the
    line to fix is the one where the construct began, its context mark. A key missing its ":"
    (``- name direct`` above ``type: x``) reads as plain text running on to the next line, where
    the ":" is refused: the line to fix is where that text began.
    """
    problem = exc.problem_mark.line + 1 if exc.problem_mark else None
    context = exc.context_mark.line + 1 if exc.context_mark else None
    parts = [part for part in (exc.context, exc.problem) if part]
    message = "invalid YAML: " + ", ".join(parts)
    fix = _OPENED.get(exc.context or "")
    if fix and context is not None and problem is not None and context < problem:
        return context, f"{message} on line {problem}; {fix} on line {context}"
    if exc.problem == "mapping values are not allowed here" and problem is not None:
        begun = _plain_text_before_error(text)
        if begun is not None and begun[0] < problem:
            return begun[0], (f'{message} on line {problem}: the text "{begun[1]}" begun on line {begun[0]} '
                              f'runs on to it; is a ":" missing on line {begun[0]}?')
    return problem or context or 1, message


def _plain_text_before_error(text: str) -> tuple[int, str] | None:
    """Line and value of the last plain scalar PyYAML read before its scanner failed (error path only)."""
    last = None
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.ScalarToken):
                last = token
    except yaml.YAMLError:
        pass
    if last is None or not last.plain:
        return None
    return last.start_mark.line + 1, last.value


def _check_duplicate_keys(root: Node, issues: Issues) -> None:
    # Aliases share node objects (and may even be recursive), so walk each node once.
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag != _MERGE:
                    if key.value in first:
                        issues.add(line_of(key), f'duplicate key "{key.value}" (first at line {first[key.value]})')
                    else:
                        first[key.value] = line_of(key)
                stack.extend((key, value))
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)


# --- reading a mapping one key at a time ------------------------------------------------------


def suggest(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def join_where(where: str, key: str) -> str:
    return f"{where}: {key}" if where else key


class Section:
    """One YAML mapping being read. ``known`` lists every key it may hold; ``finish`` reports the rest.

    ``where`` prefixes every message (``server "http"``, ``timeouts``, ``server "http": limits``).
    ``ok`` turns False at the first problem, so a caller builds its config only from a clean read.
    """

    def __init__(self, node: MappingNode, issues: Issues, where: str, known: Iterable[str]) -> None:
        self.node = node
        self.issues = issues
        self.where = where
        self.known = tuple(known)
        self.line = line_of(node)
        self.ok = True
        self._items: dict[str, tuple[Node, Node]] = {}
        self._taken: set[str] = set()
        try:
            SafeConstructor().flatten_mapping(node)  # resolves "<<: *defaults" merges in place
        except ConstructorError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.error(f"invalid merge: {exc.problem}", mark.line + 1 if mark else self.line)
        for key, value in node.value:  # merged keys come first, so the mapping's own keys win
            if not isinstance(key, ScalarNode):
                self.error("keys must be plain words", line_of(key))
                continue
            self._items[key.value] = (key, value)

    # -- reporting

    def error(self, message: str, line: int | None = None, key: str | None = None) -> None:
        self.ok = False
        prefix = join_where(self.where, key) if key else self.where
        self.issues.add(line if line is not None else self.line, f"{prefix}: {message}" if prefix else message)

    # -- access

    def _check_known(self, key: str) -> None:
        if key not in self.known:  # a programming error, not an operator's
            raise KeyError(f"{self.where or 'profile'}: key {key!r} read but not declared in known keys")

    def has(self, key: str) -> bool:
        self._check_known(key)
        return key in self._items

    def value_node(self, key: str) -> Node | None:
        """The raw value node of ``key`` (marking it read), or None when absent."""
        self._check_known(key)
        self._taken.add(key)
        item = self._items.get(key)
        return item[1] if item else None

    def key_line(self, key: str) -> int:
        item = self._items.get(key)
        return line_of(item[0]) if item else self.line

    def value_line(self, key: str) -> int:
        item = self._items.get(key)
        return line_of(item[1]) if item else self.line

    def read(self, key: str, reader: Reader[T], node: Node) -> tuple[bool, T | None]:
        try:
            return True, reader(node)
        except BadValue as exc:
            for bad, message in exc.problems:
                # An alias's node sits at its anchor, earlier in the file: point at the key instead.
                line = line_of(bad) if bad is not None else max(line_of(node), self.key_line(key))
                self.error(message, line, key=key)
            return False, None

    def take(self, key: str, reader: Reader[T], default: D) -> T | D:
        """The value of an optional key, or ``default`` when absent or invalid (the error is recorded)."""
        node = self.value_node(key)
        if node is None:
            return default
        good, value = self.read(key, reader, node)
        return value if good else default  # type: ignore[return-value]

    def need(self, key: str, reader: Reader[T]) -> T | None:
        """The value of a required key; None (with the error recorded) when missing or invalid."""
        node = self.value_node(key)
        if node is None:
            self.error(f'missing key "{key}"')
            return None
        good, value = self.read(key, reader, node)
        return value if good else None

    def section(self, key: str, known: Iterable[str]) -> Section | None:
        """A nested mapping, or None when absent or not a mapping (the error is recorded)."""
        node = self.value_node(key)
        if node is None:
            return None
        if not isinstance(node, MappingNode):
            self.error("expected a mapping of keys to values", line_of(node), key=key)
            return None
        return Section(node, self.issues, join_where(self.where, key), known)

    def finish(self) -> None:
        """Report every key that no reader asked for."""
        for key, (key_node, _) in self._items.items():
            if key in self._taken:
                continue
            guess = suggest(key, self.known)
            if guess is not None:
                hint = f'did you mean "{guess}"?'
            else:
                hint = "known keys: " + ", ".join(self.known)
            self.error(f'unknown key "{key}"; {hint}', line_of(key_node))


# --- readers: node -> typed value, or BadValue ------------------------------------------------


def _describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == "tag:yaml.org,2002:null":
        return "nothing"
    return f'"{node.value}"'


def scalar_text(node: Node, expected: str) -> str:
    """The text of a plain scalar (string or number as written); anything else is a BadValue."""
    if isinstance(node, ScalarNode) and node.tag in _TEXT_TAGS:
        return node.value
    raise BadValue(f"expected {expected}, got {_describe(node)}")


def read_str(node: Node) -> str:
    text = scalar_text(node, "a string")
    if not text:
        raise BadValue("expected a non-empty string")
    return text


def read_name(node: Node) -> str:
    text = scalar_text(node, "a name")
    if not is_valid_name(text):
        raise BadValue(f'invalid name "{text}"; {NAME_HINT}')
    return text


def read_bool(node: Node) -> bool:
    # YAML 1.1 also reads yes/no/on/off as booleans; one spelling avoids surprises.
    if isinstance(node, ScalarNode) and node.tag == _BOOL and node.value.lower() in ("true", "false"):
        return node.value.lower() == "true"
    raise BadValue(f"expected true or false, got {_describe(node)}")


def read_int(minimum: int) -> Reader[int]:
    def read(node: Node) -> int:
        if not (isinstance(node, ScalarNode) and node.tag == _INT and node.value.isdigit()):
            raise BadValue(f"expected a whole number, got {_describe(node)}")
        number = int(node.value)
        if number < minimum:
            raise BadValue(f"must be at least {minimum}, got {number}")
        return number

    return read


def _from_text(parse: Callable[[str], T], expected: str) -> Reader[T]:
    def read(node: Node) -> T:
        text = scalar_text(node, expected)
        try:
            return parse(text)
        except ValueError as exc:
            raise BadValue(str(exc)) from None

    return read


read_duration: Reader[float] = _from_text(values.parse_duration, "a duration such as 30s")
read_size: Reader[int] = _from_text(values.parse_size, "a size such as 64KiB")
read_ip: Reader[str] = _from_text(values.parse_ip, "an IP address")
read_cidr: Reader[str] = _from_text(values.parse_cidr, "a CIDR network")
read_address: Reader[tuple[str, int]] = _from_text(values.parse_listen, 'an address such as "127.0.0.1:3128"')
read_rate: Reader[float | None] = _from_text(values.parse_rate, "a rate per second such as 200")
read_bandwidth: Reader[float | None] = _from_text(values.parse_bandwidth, "a bandwidth such as 50Mbit or 10MB")


def read_choice(choices: Iterable[str]) -> Reader[str]:
    options = tuple(choices)

    def read(node: Node) -> str:
        text = scalar_text(node, "one of " + ", ".join(options))
        if text not in options:
            raise BadValue(f'expected one of {", ".join(options)}, got "{text}"')
        return text

    return read


def read_list(item: Reader[T], *, allow_empty: bool = True) -> Reader[tuple[T, ...]]:
    """A YAML list whose every element passes ``item``; all bad elements are reported."""

    def read(node: Node) -> tuple[T, ...]:
        if not isinstance(node, SequenceNode):
            raise BadValue(f"expected a list, got {_describe(node)}")
        if not node.value and not allow_empty:
            raise BadValue("expected a non-empty list")
        out: list[T] = []
        problems: list[tuple[Node | None, str]] = []
        for element in node.value:
            try:
                out.append(item(element))
            except BadValue as exc:
                problems.extend((bad if bad is not None else element, msg) for bad, msg in exc.problems)
        if problems:
            raise BadValue(problems=problems)
        return tuple(out)

    return read


def read_one_or_list(item: Reader[T]) -> Reader[tuple[T, ...]]:
    """A single value or a non-empty list of them (``listen: a`` or ``listen: [a, b]``)."""
    many = read_list(item, allow_empty=False)

    def read(node: Node) -> tuple[T, ...]:
        if isinstance(node, SequenceNode):
            return many(node)
        return (item(node),)

    return read


def default_of(cls: type, name: str) -> Any:
    """The schema's default for a field: defaults live in ``schema.py`` only."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")
