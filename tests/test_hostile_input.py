"""Hostile and odd files: each gives a clear LD000 or error line naming the file, the other files
are still checked, and the exit status follows the documented rules."""

import os
import sys

import pytest

from conftest import FIXTURES

BUGGY = (FIXTURES / "ticket_trainer_no_eval.py").read_text()  # one LD003 on line 32


def check_dir(cli, directory):
    result = cli("check", "--no-cache", "--output-format", "json", directory)
    by_name = {}
    for finding in result.json():
        by_name.setdefault(os.path.basename(finding["filename"]), []).append(finding)
    return result, by_name


def with_witness(tmp_path, name, data):
    """The hostile file next to a buggy one that must still be reported."""
    (tmp_path / "witness.py").write_text(BUGGY)
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


GOOD_VARIANTS = {
    "empty.py": b"",
    "only_comments.py": b"# nothing here\n# at all\n",
    "bom.py": b"\xef\xbb\xbf" + BUGGY.encode(),
    "crlf.py": BUGGY.replace("\n", "\r\n").encode(),
    "mixed_endings.py": BUGGY.replace("\n", "\r\n", 10).encode(),
    "tabs_formfeed.py": BUGGY.replace("    ", "\t").replace("import copy\n", "import copy\n\f\n").encode(),
    "latin1_cookie.py": ("# -*- coding: latin-1 -*-\n# caf\xe9\n" + BUGGY).encode("latin-1"),
    "long_line.py": ("x = '" + "a" * 10_000 + "'\n" + BUGGY).encode(),
}


@pytest.mark.parametrize("name", sorted(GOOD_VARIANTS))
def test_odd_but_valid_files_are_checked(cli, tmp_path, name):
    with_witness(tmp_path, name, GOOD_VARIANTS[name])
    result, by_name = check_dir(cli, tmp_path)
    assert result.err == ""
    assert [f["code"] for f in by_name["witness.py"]] == ["LD003"]
    found = by_name.get(name, [])
    text = GOOD_VARIANTS[name].decode("latin-1")
    if "# expect: LD003" in text:
        # Rows count \n, \r\n and lone \r alike, as Python does; a form feed is no line break.
        rows = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        expected_row = next(i for i, line in enumerate(rows, start=1) if "# expect: LD003" in line)
        assert [(f["code"], f["location"]["row"]) for f in found] == [("LD003", expected_row)]
    else:
        assert found == []


BAD_VARIANTS = {
    "latin1_no_cookie.py": ("x = 'caf\xe9'\n" + BUGGY).encode("latin-1"),
    "nul.py": b"import torch\nx = 1\x00\n",
    "python2.py": b"import torch\nprint 'hello'\nexec 'x = 1'\n",
    "python2_tokens.py": ("print 'no_grad'\n" + BUGGY).encode(),
    "bad_cookie.py": b"# -*- coding: klingon -*-\nx = 1\n",
    "deep_parens.py": ("x = " + "(" * 500 + "1" + ")" * 500 + "\n").encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_VARIANTS))
def test_unparsable_files_are_ld000_and_compile_agrees(cli, tmp_path, name):
    path = with_witness(tmp_path, name, BAD_VARIANTS[name])
    result, by_name = check_dir(cli, tmp_path)
    assert [f["code"] for f in by_name[name]] == ["LD000"]
    assert by_name[name][0]["message"]
    assert [f["code"] for f in by_name["witness.py"]] == ["LD003"]
    assert result.code == 1 and result.err == ""
    with pytest.raises((SyntaxError, ValueError)):
        compile(path.read_bytes(), str(path), "exec")


def test_deeply_nested_expressions_that_python_accepts(cli, tmp_path):
    chain = "loss = " + " + ".join(["x"] * 2000) + "\n"
    nested_calls = "y = " + "f(" * 90 + "1" + ")" * 90 + "\n"
    source = "import torch\nfrom torch import nn\n" + chain + nested_calls + "with torch.no_grad():\n    model = nn.Sequential(nn.Linear(1, 1), nn.Dropout(0.1))\n    model(x)\n"
    compile(source, "deep.py", "exec")
    with_witness(tmp_path, "deep.py", source)
    result, by_name = check_dir(cli, tmp_path)
    assert result.err == ""
    assert [f["code"] for f in by_name["deep.py"]] == ["LD003"]


def test_a_100000_line_file(cli, tmp_path):
    body = "".join(f"value_{i} = {i}\n" for i in range(100_000))
    with_witness(tmp_path, "huge.py", body + BUGGY)
    result, by_name = check_dir(cli, tmp_path)
    assert [f["location"]["row"] for f in by_name["huge.py"]] == [100_032]


def test_a_directory_named_like_a_file(cli, tmp_path):
    (tmp_path / "x.py").mkdir()
    (tmp_path / "x.py" / "inner.py").write_text(BUGGY)
    result = cli("check", "--no-cache", "--output-format", "json", tmp_path / "x.py")
    assert [os.path.basename(f["filename"]) for f in result.json()] == ["inner.py"]


def test_symlink_loops(cli, tmp_path):
    (tmp_path / "train.py").write_text(BUGGY)
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "a.py").symlink_to(tmp_path / "b.py")
    (tmp_path / "b.py").symlink_to(tmp_path / "a.py")
    result, by_name = check_dir(cli, tmp_path)
    assert list(by_name) == ["train.py"] and result.code == 1
    # Named explicitly, the loop is a file that cannot be read: LD000, as README promises.
    explicit = cli("check", "--no-cache", "--output-format", "concise", tmp_path / "a.py", tmp_path / "train.py")
    assert explicit.code == 1 and explicit.err == ""
    assert f"{tmp_path / 'a.py'}:1:1: LD000 cannot read file: Too many levels of symbolic links" in explicit.out
    assert " LD003 " in explicit.out


def test_a_fifo_named_explicitly_is_an_error_line(cli, tmp_path):
    os.mkfifo(tmp_path / "pipe.py")
    result = cli("check", "--no-cache", tmp_path / "pipe.py")
    assert result.code == 2 and f"{tmp_path / 'pipe.py'}: not a regular file or directory" in result.err
    assert "All checks passed!" not in result.out


def test_a_fifo_beside_the_checked_file_is_not_read(cli, tmp_path):
    """The project's other files are searched for callers and imported classes: a FIFO among
    them, even one that is imported, would block that search forever if it were opened."""
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "evaluate.py").write_text(
        "import torch\nimport pipe\nfrom pipe import Net\n\n"
        "def evaluate(model, x):\n    with torch.no_grad():\n        return model(x)\n"
    )
    result = cli("check", "--no-cache", tmp_path / "evaluate.py")
    assert result.code == 0 and "All checks passed!" in result.out


DEEP_SUM = "import torch\nx = torch.softmax(" + " + ".join(["a"] * 8000) + ", 1)\n"


def test_an_8000_term_expression_is_ld000_in_a_parallel_run(cli, tmp_path):
    # libcst's native parser overflows the C stack on it (a segfault); CPython rejects it.
    with_witness(tmp_path, "deep_sum.py", DEEP_SUM)
    result = cli("check", "--no-cache", "-j", "2", "--output-format", "json", tmp_path)
    by_name = {}
    for finding in result.json():
        by_name.setdefault(os.path.basename(finding["filename"]), []).append(finding)
    assert [f["code"] for f in by_name["deep_sum.py"]] == ["LD000"]
    assert "too deep" in by_name["deep_sum.py"][0]["message"] or "recursion" in by_name["deep_sum.py"][0]["message"]
    assert [f["code"] for f in by_name["witness.py"]] == ["LD003"] and result.code == 1


def test_a_worker_that_dies_costs_only_its_file(cli, tmp_path, monkeypatch):
    import loopdoctor.static.checker as checker

    real_check = checker.check_bytes

    def die_on_doomed(data, name, *args):  # workers are forked, so they run this patched function
        if name.endswith("doomed.py"):
            os._exit(139)
        return real_check(data, name, *args)

    monkeypatch.setattr(checker, "check_bytes", die_on_doomed)
    with_witness(tmp_path, "doomed.py", BUGGY)
    (tmp_path / "other.py").write_text(BUGGY)
    result = cli("check", "--no-cache", "-j", "2", "--output-format", "concise", tmp_path)
    assert result.code == 2
    assert f"error: {tmp_path / 'doomed.py'}: internal error, file skipped: the checker crashed" in result.err
    assert result.out.count(" LD003 ") == 2  # witness.py and other.py


def test_unreadable_file(cli, tmp_path, monkeypatch):
    unreadable = with_witness(tmp_path, "secret.py", BUGGY)
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if str(path) == str(unreadable):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", guarded_open)
    result, by_name = check_dir(cli, tmp_path)
    assert by_name["secret.py"][0]["code"] == "LD000"
    assert by_name["secret.py"][0]["message"] == "cannot read file: Permission denied"
    assert [f["code"] for f in by_name["witness.py"]] == ["LD003"]


def test_file_deleted_while_the_run_is_under_way(cli, tmp_path, monkeypatch):
    import loopdoctor.static.linter as linter

    doomed = with_witness(tmp_path, "doomed.py", BUGGY)
    real_discover = linter.discover

    def discover_then_delete(*args, **kwargs):
        found = real_discover(*args, **kwargs)
        doomed.unlink()
        return found

    monkeypatch.setattr(linter, "discover", discover_then_delete)
    result, by_name = check_dir(cli, tmp_path)
    assert by_name["doomed.py"][0]["code"] == "LD000" and "No such file" in by_name["doomed.py"][0]["message"]
    assert [f["code"] for f in by_name["witness.py"]] == ["LD003"]


def test_the_checker_never_executes_the_code_it_reads(cli, tmp_path):
    marker = tmp_path / "executed"
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nimport torch\n" + BUGGY
    with_witness(tmp_path, "payload.py", payload)
    (tmp_path / "notebook.ipynb").write_text(
        '{"cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": null, "source": '
        f'["import pathlib\\n", "pathlib.Path({str(marker)!r}).write_text(\'ran\')\\n"]}}], "metadata": {{}}, "nbformat": 4, "nbformat_minor": 5}}'
    )
    modules_before = set(sys.modules)
    check_dir(cli, tmp_path)
    assert not marker.exists()
    assert not {m for m in set(sys.modules) - modules_before if m in ("payload", "witness", "notebook")}


def test_valid_python_that_libcst_cannot_parse_is_a_warning_not_ld000(cli, tmp_path):
    # `(name): int` is a valid annotated statement that libcst's grammar rejects.
    source = "import torch\nfrom torch import nn\n\ndef f():\n    (no_such_global): int\n    with torch.no_grad():\n        return nn.Linear(1, 1)\n"
    compile(source, "odd.py", "exec")
    with_witness(tmp_path, "odd.py", source)
    result, by_name = check_dir(cli, tmp_path)
    assert "odd.py" not in by_name
    assert result.err.startswith(f"warning: {tmp_path / 'odd.py'}: not analysed: libcst cannot parse line ")
    assert [f["code"] for f in by_name["witness.py"]] == ["LD003"] and result.code == 1
