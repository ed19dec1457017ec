"""Typed paths stay inside the data roots; the environment settings of a shared deployment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.deployment import APP_DATA_DIR, DATA_ROOTS_ENV, confine, data_roots, read_only
from core.errors import OutsideDataRootsError


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """A data root holding a dataset folder and a file, and a folder beside it (outside)."""
    root = tmp_path / "data"
    (root / "covid" / "images").mkdir(parents=True)
    (root / "covid" / "metadata.csv").write_text("filename,finding\n")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.csv").write_text("name\n")
    return root.resolve(), outside.resolve()


def test_paths_inside_a_root_are_given_back_resolved(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    assert confine(str(root / "covid"), [root]) == root / "covid"
    assert confine(str(root / "covid" / "metadata.csv"), [root]) == root / "covid" / "metadata.csv"
    # A ".." that stays inside, and a relative path, taken from the root.
    assert confine(str(root / "covid" / "images" / ".." / "metadata.csv"), [root]) == root / "covid" / "metadata.csv"
    assert confine("covid/images", [root]) == root / "covid" / "images"
    # A path that does not exist yet is still inside: the reader then says it is missing.
    assert confine(str(root / "not-yet"), [root]) == root / "not-yet"


def test_a_relative_path_is_taken_from_the_root_that_holds_it(roots: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = roots
    other = tmp_path / "other"
    other.mkdir()
    assert confine("covid", [other, root]) == root / "covid"


@pytest.mark.parametrize("typed", ["{root}/../private/secret.csv", "{root}/covid/../../private", "../private"])
def test_dot_dot_out_of_the_root_is_refused(roots: tuple[Path, Path], typed: str) -> None:
    root, _ = roots
    with pytest.raises(OutsideDataRootsError, match="is outside the folders this dashboard may read"):
        confine(typed.format(root=root), [root])


def test_a_symlink_that_points_out_is_refused(roots: tuple[Path, Path]) -> None:
    root, outside = roots
    (root / "shortcut").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutsideDataRootsError, match="leads through a link") as e:
        confine(str(root / "shortcut" / "secret.csv"), [root])
    assert str(outside) not in str(e.value), "the message does not say where the link leads"
    # A link that stays inside is fine.
    (root / "inner").symlink_to(root / "covid", target_is_directory=True)
    assert confine(str(root / "inner" / "metadata.csv"), [root]) == root / "covid" / "metadata.csv"


@pytest.mark.parametrize("typed", ["/etc/passwd", "/", "~/.ssh"])
def test_absolute_paths_elsewhere_are_refused_in_plain_words(roots: tuple[Path, Path], typed: str) -> None:
    root, _ = roots
    with pytest.raises(OutsideDataRootsError) as e:
        confine(typed, [root])
    message = str(e.value)
    assert message.startswith(f"'{typed}' is outside") and str(root) in message and DATA_ROOTS_ENV in message
    assert "\n" not in message


def test_a_string_that_cannot_be_a_path_is_refused(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    with pytest.raises(OutsideDataRootsError, match="not a path"):
        confine(f"{root}/covid\x00/metadata.csv", [root])


def test_data_roots_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.chdir(tmp_path)
    assert data_roots({DATA_ROOTS_ENV: f"{a}{os.pathsep}{os.pathsep} {b} "}) == (a, b)
    assert data_roots({DATA_ROOTS_ENV: "rel"}) == (tmp_path.resolve() / "rel",)
    # Unset or blank: the working folder and the app's data folder.
    assert data_roots({}) == data_roots({DATA_ROOTS_ENV: " "}) == (tmp_path.resolve(), APP_DATA_DIR.resolve())
    # A server started in / does not make every path a data path.
    monkeypatch.chdir("/")
    assert data_roots({}) == (APP_DATA_DIR.resolve(),)
    monkeypatch.setenv(DATA_ROOTS_ENV, str(a))
    assert data_roots() == (a,)
    with pytest.raises(OutsideDataRootsError):
        confine(str(b), None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), (" Yes ", True), ("ON", True), ("0", False), ("", False), ("no", False)],
)
def test_read_only_mode_from_the_environment(value: str, expected: bool) -> None:
    assert read_only({"DASHBOARD_READ_ONLY": value}) is expected
    assert read_only({}) is False
