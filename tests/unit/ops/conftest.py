from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arcus.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "arcus.db") as s:
        s.add_tenant("acme", "Acme Corp", ["10.20.0.0/16"])
        yield s
