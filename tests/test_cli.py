"""The `loopdoctor check` command as a user meets it: formats, exit codes, errors, discovery."""

import json
import os
import subprocess
import sys

from conftest import FIXTURES, ROOT, expected_findings

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
        "Dropout stays active and BatchNorm uses and updates batch statistics; call `model.eval()` first"
    assert "32 |         val_loss = loss_fn(model(val_x), val_y).item()  # expect: LD003" in result.out
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
    assert set(finding) == {"code", "name", "message", "filename", "location", "end_location", "fix"}
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
