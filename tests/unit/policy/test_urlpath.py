"""Path normalization: the tricks that would otherwise dodge a path-prefix rule."""

from __future__ import annotations

import pytest

from arcus.policy.urlpath import normalize_path


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/admin/users", "/admin/users"),
        ("/%61dmin/", "/admin/"),
        ("/%7Euser", "/~user"),
        ("/a%2fb", "/a%2Fb"),  # an escaped slash stays escaped: it is not a separator
        ("/x/../admin", "/admin"),
        ("/x/%2e%2e/admin", "/admin"),
        ("/./admin/.", "/admin/"),
        ("//admin", "/admin"),
        ("/admin//x/", "/admin/x/"),
        ("/admin?x=/public", "/admin"),
        ("/admin#frag", "/admin"),
        ("/../../etc", "/etc"),
        ("/", "/"),
        ("/a/..", "/"),
        ("*", "*"),
        ("http://example.com/x", "http://example.com/x"),
        ("/Admin", "/Admin"),
    ],
)
def test_normalize(path: str, normal: str) -> None:
    assert normalize_path(path) == normal
