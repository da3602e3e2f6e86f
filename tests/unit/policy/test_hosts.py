"""Host matchers: the pattern forms, normal form, regex safety and the many-pattern index."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arcus.policy.hosts import (
    CHILD,
    EXACT,
    GLOB,
    REGEX,
    STRICT_CHILD,
    HostIndex,
    PatternError,
    normalize_host,
    parse_host_pattern,
)


def matches(pattern: str, host: str) -> bool:
    return parse_host_pattern(pattern).matches(normalize_host(host))


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("example.com", EXACT),
        (".example.com", CHILD),
        ("*.example.com", STRICT_CHILD),
        ("*casino*", GLOB),
        ("cdn?.example.com", GLOB),
        ("*.casino*", GLOB),
        ("~www\\.example\\.com", REGEX),
        ("10.1.2.3", EXACT),
        ("[::1]", EXACT),
    ],
)
def test_kinds(pattern: str, kind: str) -> None:
    assert parse_host_pattern(pattern).kind == kind


def test_exact() -> None:
    assert matches("example.com", "example.com")
    assert not matches("example.com", "www.example.com")
    assert not matches("example.com", "example.com.au")
    assert not matches("example.com", "badexample.com")


def test_dot_child_includes_the_domain_itself() -> None:
    assert matches(".example.com", "example.com")
    assert matches(".example.com", "www.example.com")
    assert matches(".example.com", "a.b.example.com")
    assert not matches(".example.com", "badexample.com")
    assert not matches(".example.com", "example.com.evil")


def test_star_child_is_strict() -> None:
    assert not matches("*.example.com", "example.com")
    assert matches("*.example.com", "www.example.com")
    assert matches("*.example.com", "a.b.example.com")
    assert not matches("*.example.com", "badexample.com")


def test_glob() -> None:
    assert matches("*casino*", "www.casino.example")
    assert matches("*casino*", "casino")
    assert matches("*casino*", "bestcasinos.example")
    assert not matches("*casino*", "cassino.example")
    assert matches("cdn?.example.com", "cdn1.example.com")
    assert not matches("cdn?.example.com", "cdn12.example.com")
    assert matches("*.casino*", "www.casino.example")
    assert not matches("*.casino*", "casino.example")


def test_regex_is_whole_host_and_case_insensitive() -> None:
    assert matches("~(www|cdn)[0-9]*\\.example\\.com", "cdn42.example.com")
    assert not matches("~(www|cdn)[0-9]*\\.example\\.com", "xcdn42.example.com")
    assert not matches("~(www|cdn)[0-9]*\\.example\\.com", "cdn42.example.com.evil")
    assert matches("~WWW\\.EXAMPLE\\.COM", "www.example.com")
    assert matches("~[A-Z]+\\.example\\.com", "Shop.Example.COM")


def test_case_insensitive_everywhere() -> None:
    assert matches("Example.COM", "eXample.com")
    assert matches(".EXAMPLE.com", "WWW.example.COM")
    assert matches("*.Example.com", "WWW.EXAMPLE.COM")
    assert matches("*CASINO*", "www.Casino.example")


def test_trailing_dot_on_host_and_pattern() -> None:
    assert matches("example.com", "example.com.")
    assert matches("example.com.", "example.com")
    assert matches("*.example.com", "www.example.com.")
    assert matches(".example.com.", "example.com.")
    assert matches("~www\\.example\\.com", "www.example.com.")
    assert not matches("example.com", "example.com..")


def test_idn_is_left_as_given() -> None:
    assert matches("bücher.example", "BÜCHER.example")
    assert not matches("bücher.example", "xn--bcher-kva.example")
    assert matches("xn--bcher-kva.example", "xn--bcher-kva.example")
    assert not matches("xn--bcher-kva.example", "bücher.example")
    assert matches(".bücher.example", "shop.bücher.example")


def test_ipv6_literal_brackets() -> None:
    assert normalize_host("[2001:DB8::1]") == "2001:db8::1"
    assert matches("[::1]", "::1")
    assert matches("::1", "[::1]")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty host pattern"),
        ("example.com:443", "host pattern 'example.com:443' has a port or is not a host name"),
        ("http://example.com/", "character not allowed in host pattern 'http://example.com/'"),
        ("user@example.com", "character not allowed in host pattern 'user@example.com'"),
        ("a..example.com", "empty label in host pattern 'a..example.com'"),
        (".", "empty domain in '.'"),
        ("*..x", "empty label in host pattern '*..x'"),
        ("exa mple.com", "character not allowed in host pattern 'exa mple.com'"),
        ("*[ab]*", "character not allowed in host glob '*[ab]*'"),
        ("~", "empty regex"),
        ("~(a", "bad regex '(a': missing ), unterminated subpattern at position 0"),
        ("a" * 254, f"host pattern '{'a' * 254}' is longer than 253 characters"),
    ],
)
def test_bad_patterns(pattern: str, message: str) -> None:
    with pytest.raises(PatternError) as info:
        parse_host_pattern(pattern)
    assert str(info.value) == message
    assert info.value.hint


@pytest.mark.parametrize(
    ("regex", "message"),
    [
        ("(a+)+", "a repeat inside a repeat can take exponential time"),
        ("(a*)*b", "a repeat inside a repeat can take exponential time"),
        ("(.+\\.)*x", "a repeat inside a repeat can take exponential time"),
        ("([a-z.]+\\.)*x", "a repeat inside a repeat can take exponential time"),
        ("(a|a)*", "an alternation '|' inside a repeat can take exponential time"),
        ("(ab|ab)*c", "an alternation '|' inside a repeat can take exponential time"),
        ("(?:a|b|ab)+", "an alternation '|' inside a repeat can take exponential time"),
        (".*a.*a.*a", "regex '.*a.*a.*a' has 3 open repeats: too slow on long names"),
        ("(?:.*a){3}", "regex '(?:.*a){3}' has 3 open repeats: too slow on long names"),
        ("(?:.*a.*|x).*b", "regex '(?:.*a.*|x).*b' has 3 open repeats: too slow on long names"),
        ("(a)\\1", "backreferences are not supported in host regexes"),
        ("x" * 257, "regex longer than 256 characters"),
    ],
)
def test_regexes_that_could_stall_the_proxy_are_refused(regex: str, message: str) -> None:
    with pytest.raises(PatternError) as info:
        parse_host_pattern("~" + regex)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "regex",
    [
        "([a-z0-9-]+\\.)*example\\.com",
        "(?:[^.]+\\.)*example\\.com",
        "(\\.[a-z]+)*",
        "(\\w+\\.)*x",
        ".*casino.*",
        "www[0-9]*\\.example\\.(com|net)",
        "(?:ab){2,5}",
        "(?:.*a){2}",
        "(?:[a-z0-9]+\\.){3}com",
    ],
)
def test_accepted_regexes_stay_fast_on_hostile_hosts(regex: str) -> None:
    pattern = parse_host_pattern("~" + regex)
    hostile = ["a" * 252 + "!", "a." * 126 + "!", "ab" * 126 + "!", "." * 253, "-" * 252 + "!"]
    start = time.process_time()
    for host in hostile:
        pattern.matches(host)
    assert time.process_time() - start < 0.5


def test_glob_never_backtracks_badly() -> None:
    pattern = parse_host_pattern("*a*a*a*a*a*a*a*a*b")
    start = time.process_time()
    assert not pattern.matches("a" * 253)
    assert time.process_time() - start < 0.5


def test_literals_for_the_gate() -> None:
    assert parse_host_pattern("*casino*").literal == "casino"
    assert parse_host_pattern("cdn?.example.com").literal == ".example.com"
    assert parse_host_pattern("~ads[0-9]*\\.example\\.net").literal == ".example.net"
    assert parse_host_pattern("~(www|cdn)\\.x").literal == ".x"
    assert parse_host_pattern("~.+").literal == ""
    assert parse_host_pattern("*").literal == ""


# --- the index --------------------------------------------------------------------------------

PATTERNS = [
    "example.com", ".example.com", "*.example.com", "*casino*", "cas?no.example", "~(www|cdn)\\.example\\.com",
    "~.*CASINO.*", "10.1.2.3", "bücher.example", "*", "~.+\\.ORG", "*.b.example.com", ".a.b.example.com",
    "~[^.]+\\.ſ",
]
HOSTS = st.one_of(
    st.sampled_from(
        [
            "example.com", "www.example.com", "a.b.example.com", "b.example.com", "casino.example",
            "www.casino.example", "casno.example", "cdn.example.com", "10.1.2.3", "bücher.example",
            "x.org", "", ".example.com", "a..example.com", "x.ſ", "x.s", "X.S", "example.com.",
        ]
    ),
    st.text(alphabet="abcxs.-ſK*", max_size=20),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(
    entries=st.lists(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3), max_size=8),
    host=HOSTS,
)
def test_index_agrees_with_each_pattern(entries: list[list[str]], host: str) -> None:
    parsed = [[parse_host_pattern(p) for p in patterns] for patterns in entries]
    index = HostIndex(enumerate(parsed))
    host = normalize_host(host)
    hits = index.lookup(host)
    slow = index.slow_candidates(host)
    for bit, patterns in enumerate(parsed):
        expected = any(p.matches(host) for p in patterns)
        flag = 1 << bit
        got = bool(hits & flag) or (bool(slow & flag) and index.slow_match(bit, host))
        assert got == expected, (bit, [p.text for p in patterns], host)


def test_gate_skips_globs_and_regexes_for_unrelated_hosts() -> None:
    index = HostIndex(
        [(0, [parse_host_pattern("*casino*")]), (1, [parse_host_pattern("~ads[0-9]+\\.net")]),
         (2, [parse_host_pattern("~.+")])]
    )
    assert index.slow_mask == 0b111
    assert index.slow_candidates("www.example.com") == 0b100  # only the entry without a literal
    assert index.slow_candidates("www.casino.example") == 0b111
