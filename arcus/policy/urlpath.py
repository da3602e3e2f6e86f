"""URL paths in the one form path prefixes are compared in.

Without it ``/admin`` is dodged by ``/%61dmin``, ``/x/../admin`` or ``//admin``, which origins
read as ``/admin``. Normalization: query and fragment cut off; percent-encoded unreserved
characters decoded (RFC 3986 section 6.2.2.2) and other escapes upper-cased; dot segments removed
(section 5.2.4); runs of slashes collapsed (what nginx's ``merge_slashes`` does). Matching stays
case-sensitive, as paths are. A path not starting with ``/`` (``*``, an absolute URL) is left
as it is: it matches no prefix, since every prefix starts with ``/``.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _unescape(match: re.Match[str]) -> str:
    char = chr(int(match[1], 16))
    return char if char in _UNRESERVED else "%" + match[1].upper()


def normalize_path(path: str) -> str:
    if not path.startswith("/"):
        return path
    if "?" in path or "#" in path:
        path = path.split("?", 1)[0].split("#", 1)[0]
    if "%" in path:
        path = _ESCAPE.sub(_unescape, path)
    if "/." not in path and "//" not in path:
        return path
    segments = path.split("/")
    trailing = segments[-1] in ("", ".", "..")
    out: list[str] = []
    for segment in segments:
        if segment == "..":
            if out:
                out.pop()
        elif segment and segment != ".":
            out.append(segment)
    result = "/" + "/".join(out)
    if trailing and out:
        result += "/"
    return result
