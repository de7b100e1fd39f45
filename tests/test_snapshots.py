"""The exact output of `loopdoctor check` on every fixture, pinned as ruff pins its rule fixtures.

A change to a message, hint, marker or summary shows up here as a diff. After reviewing an
intended change, accept it with `pytest tests/test_snapshots.py --snapshot-update`.
"""

import pytest

from conftest import FIXTURES, ROOT

FIXTURE_FILES = sorted(FIXTURES.rglob("*.py"))


@pytest.fixture
def plain_terminal(monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in the output are relative, as a user would type them
    monkeypatch.setenv("NO_COLOR", "1")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_full_output(cli, plain_terminal, snapshot, path):
    result = cli("check", "--select", "ALL", "--no-cache", path.relative_to(ROOT).as_posix())
    assert result.out == snapshot
