"""Host-name matchers: exact, child domain, glob and regex, shared by policies and routing.

A host is compared in one normal form: lower case, one trailing dot dropped, IPv6 brackets
dropped. Internationalized names are left as given (no IDNA conversion either way): browsers
send A-labels (``xn--...``), so a pattern meant for them is written in that form.

Pattern forms (one canonical meaning each, as in Squid's ``dstdomain``):

- ``example.com``: that host only.
- ``.example.com``: ``example.com`` and every name below it.
- ``*.example.com``: only names below it (strict children), not ``example.com`` itself.
- ``*casino*``, ``cdn?.example.com``: a glob; ``*`` is any run of characters (dots included),
  ``?`` one character; compared with the lower-cased host, like exact and child names.
- ``~regex``: a Python regular expression that must match the whole host, case-insensitively.

Exact and child patterns never cost a scan: :class:`HostIndex` keeps them in dicts keyed by the
host and by each of its parent domains, so a lookup is one probe per label of the host. Globs
and regexes are compiled once. A regex is refused when it could make the matcher backtrack for
long on a hostile host name (see :func:`check_regex_cost`): the data plane runs it on names a
client chooses.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_HOST_LENGTH = 253  # longest name DNS can carry (RFC 1035, in text form without the root dot)
MAX_REGEX_LENGTH = 256
MAX_OPEN_REPEATS = 2  # unbounded repeats that may overlap: n**k steps on an n-character host

EXACT = "exact"
CHILD = "child"  # ".x": x and its children
STRICT_CHILD = "strict-child"  # "*.x": children of x only
GLOB = "glob"
REGEX = "regex"

_BAD_HOST_CHARS = re.compile(r"[\s\x00-\x1f\x7f/\\@\[\]#?%]")
_BAD_GLOB_CHARS = re.compile(r"[\s\x00-\x1f\x7f/\\@\[\]#%]")


class PatternError(ValueError):
    """A pattern cannot be used; ``hint`` says what to write instead."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def normalize_host(host: str) -> str:
    """The form hosts are compared in: lower case, without a trailing dot or IPv6 brackets."""
    if host.endswith("."):
        host = host[:-1]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.lower()


@dataclass(frozen=True, slots=True)
class HostPattern:
    text: str  # as the operator wrote it
    kind: str  # EXACT, CHILD, STRICT_CHILD, GLOB or REGEX
    value: str  # normalized name (exact, child kinds), glob text, or regex source
    regex: re.Pattern[str] | None = None  # for GLOB and REGEX
    literal: str = ""  # GLOB, REGEX: text every matching host contains (case-insensitively), or ""

    def matches(self, host: str) -> bool:
        """Whether a host already in normal form (:func:`normalize_host`) matches."""
        kind = self.kind
        if kind == EXACT:
            return host == self.value
        if kind == CHILD:
            return host == self.value or host.endswith("." + self.value)
        if kind == STRICT_CHILD:
            return host.endswith("." + self.value)
        assert self.regex is not None
        return self.regex.fullmatch(host) is not None


def _check_name(text: str, name: str) -> str:
    if not name:
        raise PatternError(f"empty domain in {text!r}", "write a domain after the dot, e.g. '.example.com'")
    if _BAD_HOST_CHARS.search(name):
        raise PatternError(
            f"character not allowed in host pattern {text!r}",
            "write a host name only: no scheme, path, port, user or spaces",
        )
    if len(name) > MAX_HOST_LENGTH:
        raise PatternError(f"host pattern {text!r} is longer than {MAX_HOST_LENGTH} characters",
                           "a DNS name has at most 253 characters")
    if ":" in name and not _is_ipv6_literal(name):
        raise PatternError(f"host pattern {text!r} has a port or is not a host name",
                           "put ports in 'ports' and write the host alone, e.g. 'example.com'")
    if "." in name and "" in name.split("."):
        raise PatternError(f"empty label in host pattern {text!r}", "remove the doubled dot")
    return name


def _is_ipv6_literal(name: str) -> bool:
    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def parse_host_pattern(text: str) -> HostPattern:
    """Classify and validate one pattern; raises PatternError with a hint."""
    if not isinstance(text, str):
        raise PatternError(f"expected text, got {type(text).__name__}", "write host patterns as strings")
    raw = text.strip()
    if not raw:
        raise PatternError("empty host pattern", "write a host such as 'example.com' or '.example.com'")
    if raw.startswith("~"):
        source = raw[1:]
        regex = compile_host_regex(source)
        return HostPattern(text, REGEX, source, regex, _regex_literal(source))
    if raw.endswith(".") and not raw.endswith(".."):
        raw = raw[:-1]
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    raw = raw.lower()
    if "*" in raw or "?" in raw:
        if raw.startswith("*.") and "*" not in raw[2:] and "?" not in raw[2:]:
            return HostPattern(text, STRICT_CHILD, _check_name(text, raw[2:]))
        if _BAD_GLOB_CHARS.search(raw):
            raise PatternError(
                f"character not allowed in host glob {text!r}",
                "a glob takes '*' and '?' only; for anything else write a regex '~...'",
            )
        if len(raw) > MAX_HOST_LENGTH:
            raise PatternError(f"host glob {text!r} is longer than {MAX_HOST_LENGTH} characters",
                               "a DNS name has at most 253 characters")
        # fnmatch's translation uses atomic groups, so a glob never backtracks badly.
        literal = max(re.split(r"[*?]", raw), key=len)
        # Case-sensitive on lower-cased text, as exact and child names are compared.
        return HostPattern(text, GLOB, raw, re.compile(fnmatch.translate(raw)), literal)
    if raw.startswith("."):
        return HostPattern(text, CHILD, _check_name(text, raw[1:]))
    return HostPattern(text, EXACT, _check_name(text, raw))


def compile_host_regex(source: str) -> re.Pattern[str]:
    """Compile a host regex (matched whole, case-insensitively) or raise PatternError."""
    hint = "write a Python regular expression after '~' that matches the whole host, e.g. '~(www|cdn)[0-9]*\\.example\\.com'"
    if not source:
        raise PatternError("empty regex", hint)
    if len(source) > MAX_REGEX_LENGTH:
        raise PatternError(f"regex longer than {MAX_REGEX_LENGTH} characters",
                           "split it into several patterns of the same rule")
    try:
        regex = re.compile(source, re.IGNORECASE)
    except re.error as exc:
        raise PatternError(f"bad regex {source!r}: {exc}", hint) from None
    check_regex_cost(source)
    return regex


# --- regex cost ----------------------------------------------------------------------------
#
# Python's `re` backtracks. On a host of n characters a pattern with k overlapping unbounded
# repeats in a row can take n**k steps (k = 4 takes seconds on 253 characters), and a repeat
# nested in a repeat, or an alternation under a repeat, can take 2**n. The check below is
# conservative and cheap: it accepts the shapes host patterns need, e.g.
#   ([a-z0-9-]+\.)*example\.com     (inner repeat ends at a character it cannot match)
#   .*casino.*                      (two open repeats)
# and refuses the others with a hint.

try:  # the parser is private; without it only the length limit applies
    from re import _constants as _sre  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other Python versions
    _sre = _sre_parse = None

# One element of the private parser's output: (opcode, argument), the argument's shape depending
# on the opcode (an int for LITERAL, (low, high, body) for a repeat, a list for IN, ...).
_Item = tuple[Any, Any]

_COST_HINT = (
    "avoid a repeat inside a repeat, '|' inside a repeat, backreferences and more than "
    f"{MAX_OPEN_REPEATS} open repeats like '.*'; a glob ('*casino*') or child pattern "
    "('.example.com') is often what you need"
)


def check_regex_cost(source: str) -> None:
    if _sre_parse is None:  # pragma: no cover
        return
    parsed = _sre_parse.parse(source, re.IGNORECASE)
    open_repeats = _scan(list(parsed), inside_repeat=False)
    if open_repeats > MAX_OPEN_REPEATS:
        raise PatternError(f"regex {source!r} has {open_repeats} open repeats: too slow on long names", _COST_HINT)


def _regex_literal(source: str) -> str:
    """The longest run of plain characters at the top level of a regex: in every match."""
    if _sre_parse is None:  # pragma: no cover
        return ""
    best = run = ""
    for op, av in _flatten(_sre_parse.parse(source, re.IGNORECASE)):
        if op is _sre.LITERAL:
            run += chr(av)
            if len(run) > len(best):
                best = run
        else:
            run = ""
    return best


def _char_in(item: _Item, char: str) -> bool | None:
    """Whether a one-character element can match ``char`` (either case); None if unsure."""
    op, av = item
    cands = {char, char.lower(), char.upper()}
    if op is _sre.LITERAL:
        return any(ord(c) == av for c in cands)
    if op is _sre.NOT_LITERAL:
        return any(ord(c) != av for c in cands)
    if op is _sre.ANY:
        return True
    if op is _sre.IN:
        negate = False
        hit = False
        for sub_op, sub_av in av:
            if sub_op is _sre.NEGATE:
                negate = True
            elif sub_op is _sre.LITERAL:
                hit = hit or any(ord(c) == sub_av for c in cands)
            elif sub_op is _sre.RANGE:
                hit = hit or any(sub_av[0] <= ord(c) <= sub_av[1] for c in cands)
            elif sub_op is _sre.CATEGORY:
                test = _CATEGORIES.get(sub_av)
                if test is None:
                    return None
                hit = hit or any(test(c) for c in cands)
            else:
                return None
        return hit != negate
    return None


_CATEGORIES = {}
if _sre is not None:
    _CATEGORIES = {
        _sre.CATEGORY_DIGIT: str.isdigit,
        _sre.CATEGORY_NOT_DIGIT: lambda c: not c.isdigit(),
        _sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
        _sre.CATEGORY_NOT_WORD: lambda c: not (c.isalnum() or c == "_"),
        _sre.CATEGORY_SPACE: str.isspace,
        _sre.CATEGORY_NOT_SPACE: lambda c: not c.isspace(),
    }


def _single_char(body: list[_Item]) -> _Item | None:
    if len(body) == 1 and body[0][0] in (_sre.LITERAL, _sre.NOT_LITERAL, _sre.ANY, _sre.IN):
        return body[0]
    return None


def _delimited(seq: list[_Item], i: int, cyclic: bool) -> bool:
    """Is seq[i] a one-character repeat followed by a literal character it cannot match?"""
    elem = _single_char(list(seq[i][1][2]))
    if elem is None:
        return False
    j = i + 1
    if j == len(seq):
        if not cyclic or len(seq) == 1:
            return False
        j = 0
    op, av = seq[j]
    if op is not _sre.LITERAL:
        return False
    return _char_in(elem, chr(av)) is False


def _flatten(seq: Iterable[_Item]) -> list[_Item]:
    out: list[_Item] = []
    for op, av in seq:
        if op is _sre.SUBPATTERN:
            out.extend(_flatten(av[-1]))
        else:
            out.append((op, av))
    return out


def _scan(seq: list[_Item], inside_repeat: bool) -> int:
    """Count open repeats in ``seq``; raise when a shape can backtrack exponentially."""
    seq = _flatten(seq)
    count = 0
    for i, (op, av) in enumerate(seq):
        if op in (_sre.GROUPREF, _sre.GROUPREF_EXISTS):
            raise PatternError("backreferences are not supported in host regexes", _COST_HINT)
        if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT, _sre.POSSESSIVE_REPEAT):
            low, high, body = av
            star = high > 1 and high != low
            delimited = _delimited(seq, i, cyclic=inside_repeat)
            if inside_repeat and not delimited:
                raise PatternError("a repeat inside a repeat can take exponential time", _COST_HINT)
            if star and not delimited and op is not _sre.POSSESSIVE_REPEAT:
                count += 1
            if _single_char(_flatten(body)) is None:
                inner = _scan(list(body), inside_repeat=inside_repeat or star)
                count += inner * (high if not star and high > 1 else 1)  # (.*a){3} is three of them
        elif op is _sre.BRANCH:
            if inside_repeat:
                raise PatternError("an alternation '|' inside a repeat can take exponential time", _COST_HINT)
            count += max((_scan(list(branch), inside_repeat) for branch in av[1]), default=0)
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            if inside_repeat:
                raise PatternError("a lookaround inside a repeat is not supported", _COST_HINT)
            count += _scan(list(av[1]), inside_repeat)
        elif op is _sre.ATOMIC_GROUP:
            count += _scan(list(av), inside_repeat=False)
    return count


# --- index over many patterns ---------------------------------------------------------------


class HostIndex:
    r"""Which of many pattern sets match a host, as a bit mask of their positions.

    Built from ``(bit, patterns)`` pairs (a policy uses the rule's position; a router its
    route's). :meth:`lookup` returns the bits whose exact or child patterns match, found by dict
    probes. Globs and regexes are confirmed per entry with :meth:`slow_match`, for the bits
    :meth:`slow_candidates` leaves. That is a gate: each glob and regex has a literal every
    matching host contains (``bad`` for ``*bad*``; ``.example.net`` for
    ``~ads[0-9]*\.example\.net``), and one search for any of them (``re`` scans an alternation
    of literals fast) rules them all out at once for the usual host. Entries without such a
    literal (``*``, ``~.+``), or with a non-ASCII one, are always candidates.
    """

    __slots__ = ("_exact", "_child", "_slow", "_slow_mask", "_unfiltered", "_gate", "_gate_ascii")

    def __init__(self, entries: Iterable[tuple[int, Iterable[HostPattern]]]) -> None:
        self._exact: dict[str, int] = {}
        self._child: dict[str, int] = {}
        self._slow: dict[int, tuple[re.Pattern[str], ...]] = {}
        mask = unfiltered = 0
        literals: set[str] = set()
        for bit, patterns in entries:
            flag = 1 << bit
            slow: list[HostPattern] = []
            for pattern in patterns:
                if pattern.kind == EXACT:
                    self._exact[pattern.value] = self._exact.get(pattern.value, 0) | flag
                elif pattern.kind == CHILD:
                    self._exact[pattern.value] = self._exact.get(pattern.value, 0) | flag
                    self._child[pattern.value] = self._child.get(pattern.value, 0) | flag
                elif pattern.kind == STRICT_CHILD:
                    self._child[pattern.value] = self._child.get(pattern.value, 0) | flag
                else:
                    slow.append(pattern)
            if slow:
                self._slow[bit] = _combine([p.regex for p in slow if p.regex is not None])
                mask |= flag
                if all(p.literal and p.literal.isascii() for p in slow):
                    literals.update(p.literal for p in slow)
                else:
                    unfiltered |= flag
        self._slow_mask = mask
        self._unfiltered = unfiltered
        # Any order finds some literal if one is there. The literals are ASCII, and on an ASCII
        # host (lower case already) case-insensitive equals lower-case: that gate needs no
        # IGNORECASE, which would turn off re's fast scan for a literal's first character.
        ordered = sorted(literals)
        self._gate = re.compile("|".join(map(re.escape, ordered)), re.IGNORECASE) if ordered else None
        lowered = sorted({lit.lower() for lit in ordered})
        self._gate_ascii = re.compile("|".join(map(re.escape, lowered))) if lowered else None

    @property
    def slow_mask(self) -> int:
        """Bits that have a glob or regex pattern."""
        return self._slow_mask

    def lookup(self, host: str) -> int:
        """Bits whose exact or child patterns match ``host`` (already normalized)."""
        hits = self._exact.get(host, 0)
        child = self._child
        if child:
            dot = host.find(".")
            while dot >= 0:
                hits |= child.get(host[dot + 1 :], 0)
                dot = host.find(".", dot + 1)
        return hits

    def slow_candidates(self, host: str) -> int:
        """Bits whose globs or regexes may match ``host``: a superset, confirm with slow_match."""
        gate = self._gate_ascii if host.isascii() else self._gate
        if gate is None or gate.search(host) is not None:
            return self._slow_mask
        return self._unfiltered

    def slow_match(self, bit: int, host: str) -> bool:
        """Whether a glob or regex of entry ``bit`` matches ``host`` (already normalized)."""
        for regex in self._slow.get(bit, ()):
            if regex.fullmatch(host) is not None:
                return True
        return False


def _combine(regexes: list[re.Pattern[str]]) -> tuple[re.Pattern[str], ...]:
    """One alternation when the parts allow it (inline global flags do not), else each part.

    Each part keeps its own case rule: regexes ignore case, globs compare lower-cased text.
    """
    if len(regexes) == 1:
        return (regexes[0],)
    try:
        return (re.compile("|".join(f"(?{'i' if r.flags & re.IGNORECASE else '-i'}:{r.pattern})" for r in regexes)),)
    except re.error:
        return tuple(regexes)
