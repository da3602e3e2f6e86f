"""Finding a profile's text: shipped names versus paths, and files that cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcus.config import profile_text, shipped_names
from arcus.config.sources import MAX_PROFILE_BYTES, is_shipped_name, label_for
from arcus.errors import NotFound, OperatorError


def test_default_is_embedded() -> None:
    label, text = profile_text(None)
    assert label == "<embedded:default>"
    assert "servers:" in text
    assert profile_text("default") == (label, text)
    assert "default" in shipped_names()


@pytest.mark.parametrize(
    ("arg", "shipped"),
    [("edge", True), ("default", True), ("./edge", False), ("edge.yaml", False), ("edge.yml", False), ("a/b", False)],
)
def test_names_versus_paths(arg: str, shipped: bool) -> None:
    assert is_shipped_name(arg) is shipped
    assert label_for(arg) == (f"<embedded:{arg}>" if shipped else arg)


@pytest.mark.parametrize("name", ["nosuch", "..", "a b"])
def test_unknown_shipped_name(name: str) -> None:
    with pytest.raises(NotFound) as err:
        profile_text(name)
    assert err.value.message == f'no shipped profile named "{name}"'
    assert err.value.code == "not_found"
    assert err.value.hint == f"shipped profiles: {', '.join(shipped_names())}; or give a path such as ./{name}.yaml"


def test_relative_path_with_suffix_is_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("default.yaml").write_text("servers: []\n")
    assert profile_text("default.yaml") == ("default.yaml", "servers: []\n")
    assert profile_text("default")[0] == "<embedded:default>"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(NotFound) as err:
        profile_text(str(path))
    assert err.value.message == f"profile file {path} does not exist"


def test_directory_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(OperatorError) as err:
        profile_text(str(tmp_path) + "/")
    assert err.value.code == "invalid"
    assert err.value.message.endswith("it is a directory")


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"servers:\n  - name: caf\xe9\n")
    with pytest.raises(OperatorError) as err:
        profile_text(str(path))
    assert (err.value.code, err.value.message) == ("invalid", f"cannot read profile {path}: line 2 is not UTF-8 text")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_PROFILE_BYTES + 1))
    with pytest.raises(OperatorError) as err:
        profile_text(str(path))
    assert err.value.code == "invalid"
    assert "larger than 4 MiB" in err.value.message
