"""The exact output of `loopdoctor check` on every fixture, one snapshot file per fixture, as ruff
pins each rule fixture in its own `.snap`: the findings with their `[*]` fixable markers and help
lines, the summary with its unsafe-fix note, and the diff that `--fix` (and `--fix
--unsafe-fixes`, where it differs) would write.

The files are `tests/__snapshots__/test_snapshots/test_fixture[<fixture path>].snap`. A change to
a message, hint, marker, summary or fix shows up as a diff there. After reviewing an intended
change, accept it with `pytest tests/test_snapshots.py --snapshot-update`.
"""

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from conftest import FIXTURES, ROOT

FIXTURE_FILES = sorted(FIXTURES.rglob("*.py"))


class FixtureSnapshot(SingleFileSnapshotExtension):
    file_extension = "snap"
    _write_mode = WriteMode.TEXT


@pytest.fixture
def plain_terminal(monkeypatch):
    monkeypatch.chdir(ROOT)  # paths in the output are relative, as a user would type them
    monkeypatch.setenv("NO_COLOR", "1")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)


def fixture_id(path):
    return path.relative_to(FIXTURES).as_posix().replace("/", "__")


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=fixture_id)
def test_fixture(cli, plain_terminal, snapshot, path):
    name = path.relative_to(ROOT).as_posix()
    sections = [command(cli, "check", "--select", "ALL", "--no-cache", name)]
    safe = command(cli, "check", "--select", "ALL", "--no-cache", "--diff", name)
    unsafe = command(cli, "check", "--select", "ALL", "--no-cache", "--diff", "--unsafe-fixes", name)
    sections.append(safe)
    if unsafe.partition("\n")[2] != safe.partition("\n")[2]:
        sections.append(unsafe)
    assert "\n".join(sections) == snapshot(extension_class=FixtureSnapshot)


def command(cli, *args):
    """What the command prints (stdout, then stderr), under the command line that printed it."""
    result = cli(*args)
    return f"$ loopdoctor {' '.join(args)}\n{result.out}{result.err}"
