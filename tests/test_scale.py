"""The result cache and parallel workers."""

import json

import pytest

import loopdoctor.static.linter as linter
from loopdoctor.static import callers, crossfile, text_memo
from conftest import FIXTURES

BUGGY = (FIXTURES / "ticket_trainer_no_eval.py").read_text()


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(BUGGY)
    (tmp_path / "src" / "clean.py").write_text((FIXTURES / "ticket_trainer.py").read_text())
    return tmp_path


def run_json(cli, tree, *extra):
    return cli("check", "--output-format", "json", "--cache-dir", tree / "cache", "--jobs", "1", *extra, tree / "src")


def forbid_checking(monkeypatch):
    def fail(task):
        raise AssertionError(f"{task[1]} was checked again instead of coming from the cache")

    monkeypatch.setattr(linter, "_check_task", fail)


def test_second_run_is_answered_by_the_cache(cli, tree, monkeypatch):
    first = run_json(cli, tree)
    assert (tree / "cache" / ".gitignore").read_text().splitlines()[-1] == "*"
    forbid_checking(monkeypatch)
    second = run_json(cli, tree)
    assert second.out == first.out and second.code == first.code == 1
    full = cli("check", "--cache-dir", tree / "cache", tree / "src")
    assert "32 |         val_loss = loss_fn(model(val_x), val_y).item()" in full.out  # source lines come back too


def test_content_change_invalidates(cli, tree):
    run_json(cli, tree)
    (tree / "src" / "train.py").write_text(BUGGY.replace("    with torch.no_grad():\n        val_loss", "    model.eval()\n    with torch.no_grad():\n        val_loss"))
    assert run_json(cli, tree).json() == []


def test_a_narrower_selection_is_answered_by_the_cache(cli, tree, monkeypatch):
    # The cache keeps the findings of the rules a file was analysed with; the selection is
    # applied after it.
    assert [f["code"] for f in run_json(cli, tree).json()] == ["LD003"]
    with monkeypatch.context() as patched:
        forbid_checking(patched)
        assert run_json(cli, tree, "--select", "LD001").json() == []
        assert [f["code"] for f in run_json(cli, tree, "--select", "LD003").json()] == ["LD003"]
        assert [f["code"] for f in run_json(cli, tree, "--extend-select", "LD100").json()] == ["LD003"]  # no analysis needed
        with pytest.raises(AssertionError, match="checked again"):
            run_json(cli, tree, "--select", "LD019")  # never analysed: the file is checked for it
    run_json(cli, tree, "--select", "LD019")
    forbid_checking(monkeypatch)  # now analysed with the default rules and LD019 together
    assert [f["code"] for f in run_json(cli, tree, "--select", "LD003,LD019").json()] == ["LD003"]


def test_an_analysis_setting_change_invalidates(cli, tree, monkeypatch):
    run_json(cli, tree)
    (tree / "pyproject.toml").write_text('[tool.loopdoctor]\ntorch-version = "2.6"\n')
    forbid_checking(monkeypatch)
    with pytest.raises(AssertionError, match="checked again"):
        run_json(cli, tree)


def test_entries_of_deleted_files_are_pruned(cli, tree):
    run_json(cli, tree)
    entries = lambda: sorted(p for p in (tree / "cache").rglob("*.json") if p.name not in ("files.json", text_memo.FILE_NAME))
    assert len(entries()) == 2
    (tree / "src" / "clean.py").unlink()
    run_json(cli, tree)
    assert len(entries()) == 1
    index = json.loads(next((tree / "cache").rglob("files.json")).read_text())
    assert list(index) == [str(tree / "src" / "train.py")]


def test_a_warm_run_does_not_search_the_texts_again(cli, tree, monkeypatch):
    first = run_json(cli, tree)
    (tree / "src" / "helpers.py").write_text("def predict_labels(net, x):\n    return net(x).argmax(1)\n")
    run_json(cli, tree)
    forbid_checking(monkeypatch)

    def fail(*args):
        raise AssertionError("a text was searched again instead of coming from the cache")

    for owner, name in ((crossfile, "_called_imports"), (crossfile, "_asks"), (callers, "_evaluating_functions")):
        monkeypatch.setattr(owner, name, fail)
    third = run_json(cli, tree)
    assert [f for f in third.json() if "helpers" not in f["filename"]] == first.json()
    assert any("predict_labels" in f["message"] for f in third.json())


def test_version_change_invalidates(cli, tree, monkeypatch):
    run_json(cli, tree)
    monkeypatch.setattr("loopdoctor.static.cache.__version__", "99.0")
    forbid_checking(monkeypatch)
    with pytest.raises(AssertionError, match="checked again"):
        run_json(cli, tree)


def test_corrupt_cache_entries_are_ignored_with_a_warning(cli, tree):
    first = run_json(cli, tree)
    for entry in (tree / "cache").rglob("*.json"):
        entry.write_text("{not json")
    second = run_json(cli, tree)
    assert second.json() == first.json()
    assert second.err.startswith("warning: ignoring a corrupt cache entry")


def test_unwritable_cache_is_a_warning_not_a_failure(cli, tree):
    blocker = tree / "not-a-directory"
    blocker.write_text("")
    result = cli("check", "--output-format", "json", "--cache-dir", blocker, tree / "src")
    assert result.code == 1 and len(result.json()) == 1
    assert result.err.startswith("warning: cannot write the cache")


def test_no_cache_and_clean(cli, tree):
    cli("check", "--no-cache", "--cache-dir", tree / "cache", tree / "src")
    assert not (tree / "cache").exists()
    run_json(cli, tree)
    assert cli("clean", "--cache-dir", tree / "cache").out.strip() == f"removed {tree / 'cache'}"
    assert not (tree / "cache").exists()
    assert cli("clean", "--cache-dir", tree / "cache").out.strip() == f"no cache at {tree / 'cache'}"


def test_several_jobs_give_the_same_output_in_the_same_order(cli):
    one = cli("check", "--no-cache", "--jobs", "1", "--select", "ALL", "--output-format", "json", FIXTURES)
    two = cli("check", "--no-cache", "--jobs", "2", "--select", "ALL", "--output-format", "json", FIXTURES)
    assert two.out == one.out and len(json.loads(one.out)) > 20


def test_a_run_answered_by_the_cache_imports_no_libcst(tmp_path):
    """Start-up: cached findings, fixes included, are rendered without the parser."""
    import subprocess
    import sys

    (tmp_path / "train.py").write_text((FIXTURES / "ticket_trainer_amp_clip.py").read_text())  # LD005, with a fix
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['loopdoctor', 'check', '--cache-dir', %r, %r]\n"
        "try:\n    runpy.run_module('loopdoctor', run_name='__main__')\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "print('LIBCST-LOADED' if 'libcst' in sys.modules else 'LIBCST-ABSENT', code)\n"
    ) % (str(tmp_path / "cache"), str(tmp_path / "train.py"))
    runs = [subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True) for _ in range(2)]
    assert runs[0].stdout.strip().endswith("LIBCST-LOADED 1"), runs[0].stdout + runs[0].stderr
    assert runs[1].stdout.strip().endswith("LIBCST-ABSENT 1"), runs[1].stdout + runs[1].stderr
    assert "LD005" in runs[1].stdout and "= help:" in runs[1].stdout


def test_an_unreadable_text_memo_costs_only_speed(cli, tree):
    first = run_json(cli, tree)
    memo = next((tree / "cache").rglob(text_memo.FILE_NAME))
    for garbage in ("{not json", '{"fingerprint": "other", "files": {}}', "[]"):
        memo.write_text(garbage)
        (tree / "src" / "train.py").write_text(BUGGY + "\n")  # new bytes: searched again
        assert run_json(cli, tree).json() == first.json()
