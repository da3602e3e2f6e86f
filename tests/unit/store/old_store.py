"""A store file as an older Arcus wrote it: the migration tests start from one."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcus.store import db, migrations


def migrate_to(path: Path, version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Create ``path`` with only migrations 1 to ``version`` applied (the schema that Arcus had)."""
    with monkeypatch.context() as m:
        m.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:version])
        m.setattr(migrations, "SCHEMA_VERSION", version)
        conn = db.connect(path)
        try:
            migrations.migrate(conn, path)
        finally:
            conn.close()
