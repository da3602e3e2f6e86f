"""The log line formats and the per-tenant minimum level (the profile's ``log`` section).

One line per event in both formats: ``text`` is the daemon's historical format
(``LOG_FORMAT``); ``json`` is one JSON object per line (:class:`JsonFormatter`), a message with
a newline in it (a refused reload's ``file:line`` list, a traceback) stays on its line.

A record may carry ``tenant`` (the daemon passes it as ``extra``; the access log's records
do) and ``fields`` (a dict of structured fields, the access log's event). Per-tenant levels
(:class:`TenantLevels`) let one tenant be logged at ``debug`` and another at ``warning`` while
the rest follow ``log.level``; records with no tenant always follow ``log.level``.

Credentials: no formatter here adds anything the record does not hold, and what the records
hold never includes a proxy credential (the data plane keeps the user name only; the access
line never has the query string unless the tenant opted in).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The text format of the ``arcus`` loggers."""
LEVELS: Mapping[str, int] = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class TenantLevels(logging.Filter):
    """A handler filter: a record about a tenant passes at that tenant's level, else at ``base``."""

    def __init__(self, base: int, per_tenant: Mapping[str, int]) -> None:
        super().__init__()
        self.base = base
        self.per_tenant = dict(per_tenant)

    @classmethod
    def from_config(cls, level: str, tenants: Iterable[tuple[str, str]]) -> TenantLevels:
        return cls(LEVELS[level], {name: LEVELS[lv] for name, lv in tenants})

    @property
    def lowest(self) -> int:
        """The level the loggers must let through for every tenant's lines to reach the filter."""
        return min([self.base, *self.per_tenant.values()])

    def allows(self, tenant: str | None, levelno: int) -> bool:
        if tenant is None:
            return levelno >= self.base
        return levelno >= self.per_tenant.get(tenant, self.base)

    def filter(self, record: logging.LogRecord) -> bool:
        return self.allows(getattr(record, "tenant", None), record.levelno)


def _iso(created: float) -> str:
    sec = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{int((created - sec) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "msg", "tenant"?, ...fields, "exc"?}``, one line each.

    ``time`` is ISO-8601 UTC with milliseconds; ``level`` lower case; the record's ``fields``
    (a dict) are merged after the fixed keys and never replace them.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        tenant = getattr(record, "tenant", None)
        if tenant is not None:
            out["tenant"] = tenant
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, separators=(",", ":"))
