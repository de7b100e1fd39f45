"""The `loopdoctor check` command as a user meets it: formats, exit codes, errors, discovery."""

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT, expected_findings
from loopdoctor.cli import main

BUGGY = FIXTURES / "ticket_trainer_no_eval.py"
CLEAN = FIXTURES / "ticket_trainer.py"


def test_clean_file_exits_zero(cli):
    result = cli("check", CLEAN)
    assert result.code == 0
    assert "All checks passed!" in result.out


def test_full_output_shows_location_source_marker_hint_and_summary(cli):
    result = cli("check", BUGGY)
    assert result.code == 1
    lines = result.out.splitlines()
    assert lines[0] == f"{BUGGY}:32:28: LD003 `model` is evaluated here but may still be in training mode: " \
        "its Dropout stays active, so the evaluation is noisy"
    assert "32 |         val_loss = loss_fn(model(val_x), val_y).item()  # expect: LD003:28" in result.out
    caret_line = next(line for line in lines if "^" in line)
    assert caret_line.index("^") == lines[2].index("model(val_x)")
    assert caret_line.count("^") == len("model(val_x)")
    assert "help: call `model.eval()`" in result.out
    assert lines[-2:] == ["Found 1 problem in 1 file.", "1 more fixable with `--fix --unsafe-fixes` (review those changes)."]
    assert "\x1b[" not in result.out  # no colour when not on a terminal


def test_summary_counts_problems_and_files(cli):
    paths = [FIXTURES / "rules" / "ld002_flagged.py", FIXTURES / "rules" / "ld005_flagged.py"]
    expected = sum(len(expected_findings(path)) for path in paths)
    result = cli("check", *paths)
    assert f"\nFound {expected} problems in 2 files.\n" in result.out


def test_concise_is_one_line_per_finding(cli):
    path = FIXTURES / "rules" / "ld005_flagged.py"
    result = cli("check", "--output-format", "concise", path)
    lines = result.out.splitlines()
    count = len(expected_findings(path))
    assert lines[count:] == [f"Found {count} problems in 1 file.", f"{count} fixable with `--fix`."]
    assert all(line.startswith(f"{path}:") and " LD005 " in line for line in lines[:count])


def test_json_has_exactly_the_documented_keys(cli):
    result = cli("check", "--output-format", "json", BUGGY)
    findings = json.loads(result.out)
    assert len(findings) == 1
    finding = findings[0]
    assert set(finding) == {"code", "name", "message", "filename", "location", "end_location", "fix", "url"}
    assert finding["url"] == "https://github.com/loopdoctor/loopdoctor/blob/main/rules/LD003.md"
    assert finding["code"] == "LD003" and finding["name"] == "missing-eval-mode"
    assert finding["filename"] == str(BUGGY)
    assert finding["location"] == {"row": 32, "column": 28}
    assert finding["end_location"] == {"row": 32, "column": 40}
    assert finding["fix"]["applicability"] == "unsafe"
    assert [e["content"] for e in finding["fix"]["edits"]] == ["    model.eval()\n", "    model.train()\n"]


def test_json_filenames_join_the_given_directory(cli, tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "train.py").write_text(BUGGY.read_text())
    result = cli("check", "--output-format", "json", tmp_path)
    assert [f["filename"] for f in result.json()] == [os.path.join(str(tmp_path), "pkg", "train.py")]


def test_select_and_ignore(cli):
    path = FIXTURES / "rules" / "ld001_flagged.py"
    assert cli("check", "--select", "LD002", path).code == 0
    assert cli("check", "--ignore", "LD001", path).code == 0
    assert cli("check", "--select", "LD00", "--ignore", "LD002", path).code == 1


def test_unknown_code_is_a_usage_error(cli):
    result = cli("check", "--select", "LD999", CLEAN)
    assert result.code == 2
    assert "unknown rule code or prefix: LD999" in result.err


def test_missing_path_is_reported_and_other_paths_still_checked(cli, tmp_path):
    result = cli("check", "--output-format", "concise", tmp_path / "nope.py", BUGGY)
    assert result.code == 2
    assert "nope.py: no such file or directory" in result.err
    assert " LD003 " in result.out


def test_unparsable_files_are_ld000_and_the_rest_is_checked(cli, tmp_path):
    (tmp_path / "a_syntax.py").write_text("import torch\ndef f(:\n    pass\n")
    (tmp_path / "b_latin.py").write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "c_nul.py").write_bytes(b"import torch\nx = 1\x00\n")
    (tmp_path / "d_train.py").write_text(BUGGY.read_text())
    result = cli("check", "--output-format", "json", tmp_path)
    by_file = {os.path.basename(f["filename"]): f for f in result.json()}
    assert by_file["a_syntax.py"]["code"] == "LD000" and by_file["a_syntax.py"]["name"] == "parse-error"
    assert by_file["a_syntax.py"]["location"]["row"] == 2
    assert "syntax error" in by_file["a_syntax.py"]["message"]
    assert by_file["b_latin.py"]["code"] == "LD000" and "decode" in by_file["b_latin.py"]["message"]
    assert by_file["c_nul.py"]["code"] == "LD000" and by_file["c_nul.py"]["location"]["row"] == 2
    assert by_file["d_train.py"]["code"] == "LD003"
    assert result.code == 1 and result.err == ""


def test_coding_cookie_is_honoured(cli, tmp_path):
    path = tmp_path / "latin.py"
    path.write_bytes("# -*- coding: latin-1 -*-\n".encode() + BUGGY.read_text().replace("The", "Th\xe9").encode("latin-1"))
    result = cli("check", "--output-format", "json", path)
    assert [f["code"] for f in result.json()] == ["LD003"]


def test_directories_skip_environments_and_build_outputs(cli, tmp_path):
    for skipped in (".git", ".venv", "venv", "__pycache__", "build", "dist", "node_modules", "custom_env"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "train.py").write_text(BUGGY.read_text())
    (tmp_path / "custom_env" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "notes.txt").write_text(BUGGY.read_text())
    assert cli("check", tmp_path).code == 0
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text(BUGGY.read_text())
    assert cli("check", tmp_path).code == 1


def test_python_dash_m_and_console_script_never_import_torch(tmp_path):
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['loopdoctor', 'check', %r, %r]\n"
        "try:\n    runpy.run_module('loopdoctor', run_name='__main__')\n"
        "except SystemExit as exit:\n    code = exit.code\n"
        "print('TORCH-LOADED' if 'torch' in sys.modules else 'TORCH-ABSENT', code)\n"
    ) % (str(FIXTURES), str(ROOT / "loopdoctor"))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip().endswith("TORCH-ABSENT 1"), done.stdout + done.stderr


def test_console_script_runs(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "loopdoctor")
    done = subprocess.run([script, "check", str(CLEAN)], capture_output=True, text=True)
    assert done.returncode == 0 and "All checks passed!" in done.stdout


# ---- what a new user tries first ------------------------------------------------------------

def test_version(capsys):
    from loopdoctor import __version__

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.strip() == f"loopdoctor {__version__}"


def test_jobs_must_be_positive(cli, capsys):
    for bad in ("0", "-3", "two"):
        with pytest.raises(SystemExit) as exit:
            main(["check", "-j", bad, str(CLEAN)])
        assert exit.value.code == 2
        assert "argument -j/--jobs:" in capsys.readouterr().err


def test_rule_by_name_and_piped_output_is_the_page_unpadded(cli):
    by_name = cli("rule", "clip-before-unscale")
    by_code = cli("rule", "LD005")
    page = (ROOT / "rules" / "LD005.md").read_text()
    assert by_name.code == by_code.code == 0
    assert by_name.out == by_code.out == page  # not a terminal: the Markdown as written
    assert not any(line != line.rstrip() for line in by_name.out.splitlines())


def test_a_missing_path_never_says_all_checks_passed(cli, tmp_path):
    result = cli("check", tmp_path / "nope.py")
    assert result.code == 2 and "no such file or directory" in result.err
    assert "All checks passed!" not in result.out


def test_a_broken_notebook_alone_never_says_all_checks_passed(cli, tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    result = cli("check", tmp_path / "broken.ipynb")
    assert result.code == 2 and "not a valid notebook" in result.err
    assert "All checks passed!" not in result.out


def test_a_directory_without_python_files_says_so(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("nothing to see\n")
    result = cli("check", tmp_path)
    assert result.code == 0
    assert result.err.strip() == "warning: no Python files found"
    assert "All checks passed!" not in result.out


def test_a_named_non_python_file_is_skipped_with_a_warning(cli, tmp_path):
    (tmp_path / "README.md").write_text("# Title\n\nSome `code`.\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "train.py").write_text(BUGGY.read_text())
    result = cli("check", "--output-format", "concise", tmp_path / "README.md", tmp_path / "pyproject.toml", tmp_path / "train.py")
    assert result.code == 1 and "LD000" not in result.out and " LD003 " in result.out
    assert f"warning: {tmp_path / 'README.md'}: not a Python file or notebook, skipped" in result.err
    assert f"warning: {tmp_path / 'pyproject.toml'}: not a Python file or notebook, skipped" in result.err
    only = cli("check", tmp_path / "README.md")
    assert only.code == 0 and "All checks passed!" not in only.out


def test_a_named_script_without_suffix_is_checked_when_its_shebang_says_python(cli, tmp_path):
    script = tmp_path / "train"
    script.write_text("#!/usr/bin/env python3\n" + BUGGY.read_text())
    result = cli("check", "--output-format", "concise", script)
    assert result.code == 1 and f"{script}:33:28: LD003" in result.out


def test_stdin_with_a_filename(cli, monkeypatch, tmp_path):
    import io

    (tmp_path / "pyproject.toml").write_text('[tool.loopdoctor]\nper-file-ignores = {"legacy/*" = ["LD003"]}\n')
    (tmp_path / "legacy").mkdir()
    source = BUGGY.read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(source)))
    named = cli("check", "--output-format", "concise", "-", "--stdin-filename", tmp_path / "train.py")
    assert named.code == 1 and f"{tmp_path / 'train.py'}:32:28: LD003" in named.out
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(source)))
    ignored = cli("check", "-", "--stdin-filename", tmp_path / "legacy" / "train.py")  # per-file-ignores apply
    assert ignored.code == 0 and "All checks passed!" in ignored.out
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(source)))
    anonymous = cli("check", "--output-format", "concise", "-")
    assert "-:32:28: LD003" in anonymous.out


def test_stdin_fix_writes_the_fixed_source_to_stdout(cli, monkeypatch, tmp_path):
    import io

    source = (FIXTURES / "ticket_trainer_amp_clip.py").read_bytes()
    on_disk = tmp_path / "train.py"
    on_disk.write_bytes(source)
    assert cli("check", "--no-cache", "--fix", on_disk).code in (0, 1)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(source)))
    result = cli("check", "--fix", "-", "--stdin-filename", tmp_path / "other.py")
    assert result.out == on_disk.read_text()  # exactly what --fix writes
    assert result.out != source.decode()


def test_show_files_lists_what_would_be_checked(cli, tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "nb.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "gen.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("")
    result = cli("check", "--show-files", tmp_path)
    assert result.code == 0 and result.out.splitlines() == [str(tmp_path / "a.py"), str(tmp_path / "nb.ipynb")]


def test_show_settings_names_the_configuration_and_the_rules(cli, tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["torch>=2.6"]\n'
        '[tool.loopdoctor]\nextend-select = ["LD019"]\nper-file-ignores = {"tests/*" = ["LD015"]}\n'
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "t.py").write_text("x = 1\n")
    result = cli("check", "--show-settings", tmp_path / "tests" / "t.py")
    assert result.code == 0
    assert f"  configuration: {tmp_path / 'pyproject.toml'}" in result.out
    assert "LD019" in result.out and "  per-file-ignores here: LD015" in result.out
    assert f"  torch-version: 2.6 (the torch requirement in {tmp_path / 'pyproject.toml'})" in result.out


@pytest.mark.parametrize("layers, effect", [
    ("nn.Linear(2, 2), nn.BatchNorm1d(2)", "its BatchNorm uses and updates batch statistics"),
    ("nn.Linear(2, 2), nn.Dropout(0.1), nn.BatchNorm1d(2)", "its Dropout stays active and its BatchNorm uses"),
    ("nn.Linear(2, 2), Block()", "any Dropout stays active and any BatchNorm"),  # Block is defined elsewhere
])
def test_ld003_says_what_the_model_contains(cli, tmp_path, layers, effect):
    source = (
        "import torch\nfrom torch import nn\n\n"
        f"model = nn.Sequential({layers})\n"
        "model.train()\nwith torch.no_grad():\n    model(torch.ones(1, 2))\n"
    )
    (tmp_path / "a.py").write_text(source)
    [finding] = cli("check", "--no-cache", "--output-format", "json", tmp_path / "a.py").json()
    assert finding["code"] == "LD003" and effect in finding["message"]


def test_ld003_is_silent_on_a_model_without_mode_dependent_layers(cli, tmp_path):
    """Train and eval mode compute the same without Dropout or BatchNorm (cleanrl's Q-networks
    acting under no_grad in the rollout); the run-time half is silent there too."""
    source = (
        "import torch\nfrom torch import nn\n\n"
        "model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))\n"
        "model.train()\nwith torch.no_grad():\n    model(torch.ones(1, 4, 3, 3))\n"
    )
    (tmp_path / "a.py").write_text(source)
    assert cli("check", "--no-cache", "--output-format", "json", tmp_path / "a.py").json() == []
