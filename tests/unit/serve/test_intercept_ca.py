"""The interception service's CA cache: read again every CA_TTL seconds, and a CA whose files
can no longer be read does not stop interception (the one loaded before keeps signing)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from arcus.errors import OperatorError
from arcus.serve import intercept
from arcus.tls.ca import KEY_FILE
from arcus.tls.castore import CAStore


def test_a_damaged_ca_key_keeps_the_ca_loaded_before_and_says_so(tmp_path: Path, monkeypatch, caplog) -> None:
    first = CAStore(tmp_path).init(None)
    svc = intercept.Interception(tmp_path, workers=1)
    monkeypatch.setattr(intercept, "CA_TTL", 0.0)  # every call reads the files again
    try:
        loaded = asyncio.run(svc.ca("acme"))
        assert loaded.cert == first.cert
        (first.directory / KEY_FILE).write_text("garbage\n")
        with caplog.at_level(logging.ERROR, logger="arcus.serve"):
            again = asyncio.run(svc.ca("acme"))
        assert again is loaded and svc.ca_failures == 1  # ctl health reports ca_unreadable for a minute
        assert "cannot be read again" in caplog.text and "still signing with the one loaded before" in caplog.text
        # with nothing loaded before, the failure is the caller's (the tunnel is refused, its record says why)
        fresh = intercept.Interception(tmp_path, workers=1)
        try:
            with pytest.raises(OperatorError):
                asyncio.run(fresh.ca("acme"))
            assert fresh.ca_failures == 1
        finally:
            fresh.close()
    finally:
        svc.close()
