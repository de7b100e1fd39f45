"""--fix, --unsafe-fixes and --diff: exact results, idempotence, formatting kept, safe writes."""

import os
import stat

import pytest

from conftest import FIXTURES

LD004 = '''"""Trainer."""
from __future__ import annotations

import torch


def fit(model, loader, optimizer):
    best = None
    for epoch in range(3):
        for xb in loader:
            optimizer.zero_grad()
            model(xb).sum().backward()
            optimizer.step()
        best = model.state_dict().copy()  # keep the best
    return best
'''
LD004_FIXED = LD004.replace("import torch\n", "import copy\nimport torch\n").replace(
    "best = model.state_dict().copy()", "best = copy.deepcopy(model.state_dict())")

LD005 = '''import torch


def step(model, loss, opt, grad_scaler):
    grad_scaler.scale(loss).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    torch.nn.utils.clip_grad_value_(model.parameters(), 5.0)
    grad_scaler.step(opt)
    grad_scaler.update()
'''
LD005_FIXED = LD005.replace("    torch.nn.utils.clip_grad_norm_", "    grad_scaler.unscale_(opt)\n    torch.nn.utils.clip_grad_norm_")

LD001 = '''import torch.nn.functional as F


def losses(logits, y, criterion):
    probs = F.softmax(logits, dim=1)
    a = F.cross_entropy(F.softmax(logits, dim=-1), y)
    b = criterion(probs, y) if False else F.cross_entropy(logits.softmax(1), y)
    return a + b + F.cross_entropy(probs, y)
'''
LD001_SAFE = LD001.replace("F.cross_entropy(F.softmax(logits, dim=-1), y)", "F.cross_entropy(logits, y)").replace(
    "F.cross_entropy(logits.softmax(1), y)", "F.cross_entropy(logits, y)")
LD001_UNSAFE = LD001_SAFE.replace("F.cross_entropy(probs, y)", "F.cross_entropy(logits, y)")

LD002 = '''def train(model, loader, loss_fn, optimizer):
    optimizer.zero_grad()
    for xb, yb in loader:
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
'''
LD002_FIXED = '''def train(model, loader, loss_fn, optimizer):
    for xb, yb in loader:
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
'''

LD003 = '''import torch
from torch import nn

model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.1))
with torch.no_grad():
    out = model(torch.ones(1, 2))
print(out)
'''
LD003_FIXED = LD003.replace("with torch.no_grad():", "model.eval()\nwith torch.no_grad():").replace(
    "print(out)", "model.train()\nprint(out)")

LD006 = '''from torch import no_grad


def validate(model, val_loader, loss_fn):
    model.eval()
    total = 0.0
    for xb, yb in val_loader:
        # one batch
        note = """a multi-line string
keeps its text"""
        total += loss_fn(model(xb), yb).item()
    return total
'''
LD006_FIXED = '''from torch import no_grad


def validate(model, val_loader, loss_fn):
    model.eval()
    total = 0.0
    with no_grad():
        for xb, yb in val_loader:
            # one batch
            note = """a multi-line string
keeps its text"""
            total += loss_fn(model(xb), yb).item()
    return total
'''
LD006_NO_IMPORT = "def predict(model, test_loader):\n\tmodel.eval()\n\tfor x in test_loader:\n\t\tprint(model(x))\n"
LD006_NO_IMPORT_FIXED = (
    "import torch\ndef predict(model, test_loader):\n\tmodel.eval()\n"
    "\twith torch.no_grad():\n\t\tfor x in test_loader:\n\t\t\tprint(model(x))\n"
)

# Keyword operations: added after the last argument (multi-line calls and trailing commas kept),
# replaced in place, removed with their comma.
LD015_ADD = 'import torch\nstate = torch.load(\n    "a.pt",\n    map_location="cpu",\n)\nempty = torch.load()\n'
LD015_ADD_FIXED = LD015_ADD.replace('"cpu",\n', '"cpu", weights_only=True,\n').replace("torch.load()", "torch.load(weights_only=True)")
TORCH_26 = "# torch-version: 2.6\n"  # written to pyproject.toml by fix() below
LD015_REPLACE = 'import torch\nstate = torch.load("a.pt", weights_only = False, map_location="cpu")\n'
LD015_REPLACE_FIXED = LD015_REPLACE.replace("weights_only = False", "weights_only = True")
LD015_REMOVE = (
    'import pickle\nimport torch\na = torch.load("a.pt", pickle_module=pickle)\n'
    'b = torch.load(pickle_module=pickle, f="b.pt")\nc = torch.load("c.pt", pickle_module=pickle, mmap=True)\n'
)
LD015_REMOVE_FIXED = 'import pickle\nimport torch\na = torch.load("a.pt")\nb = torch.load(f="b.pt")\nc = torch.load("c.pt", mmap=True)\n'


def fix(cli, tmp_path, source, *flags, name="train.py"):
    if isinstance(source, str) and source.startswith(TORCH_26):
        (tmp_path / "pyproject.toml").write_text('[tool.loopdoctor]\ntorch-version = "2.6"\n')
        source = source[len(TORCH_26):]
    path = tmp_path / name
    path.write_bytes(source.encode() if isinstance(source, str) else source)
    result = cli("check", "--no-cache", "--fix", *flags, path)
    return path.read_bytes().decode(), result


@pytest.mark.parametrize("source, fixed, flags", [
    (LD004, LD004_FIXED, ()),
    (LD005, LD005_FIXED, ()),
    (LD001, LD001_SAFE, ()),
    (LD001, LD001_UNSAFE, ("--unsafe-fixes",)),
    (LD002, LD002, ()),  # unsafe only: --fix alone leaves it
    (LD002, LD002_FIXED, ("--unsafe-fixes",)),
    (LD003, LD003, ()),
    (LD003, LD003_FIXED, ("--unsafe-fixes",)),
    (LD006, LD006, ()),
    (LD006, LD006_FIXED, ("--unsafe-fixes",)),
    (LD006_NO_IMPORT, LD006_NO_IMPORT_FIXED, ("--unsafe-fixes",)),
    (LD015_ADD, LD015_ADD_FIXED, ("--unsafe-fixes",)),
    (TORCH_26 + LD015_REPLACE, LD015_REPLACE_FIXED, ("--unsafe-fixes",)),
    (TORCH_26 + LD015_REMOVE, LD015_REMOVE_FIXED, ("--unsafe-fixes",)),
], ids=[
    "LD004", "LD005", "LD001-safe", "LD001-unsafe", "LD002-needs-unsafe", "LD002", "LD003-needs-unsafe", "LD003",
    "LD006-needs-unsafe", "LD006-string-kept", "LD006-tabs-import-added",
    "LD015-add-keyword", "LD015-replace-keyword", "LD015-remove-keyword",
])
def test_fix_gives_exactly(cli, tmp_path, source, fixed, flags):
    after, result = fix(cli, tmp_path, source, *flags)
    source = source.removeprefix(TORCH_26)
    assert after == fixed
    again, second = fix(cli, tmp_path, after, *flags)
    assert again == after  # idempotent
    if after != source:
        assert "fixed" in result.out
    assert result.code == (1 if "remaining" not in result.out or "0 remaining" not in result.out else 0)


def test_diff_equals_what_fix_writes(cli, tmp_path):
    import difflib

    path = tmp_path / "a.py"
    path.write_text(LD004 + LD005.replace("import torch\n", ""))
    shown = cli("check", "--no-cache", "--diff", path)
    assert path.read_text() == LD004 + LD005.replace("import torch\n", "")  # --diff changes nothing
    assert shown.code == 1 and "Would fix 2 problems." in shown.err
    before = path.read_text()
    cli("check", "--no-cache", "--fix", path)
    expected = "".join(difflib.unified_diff(before.splitlines(True), path.read_text().splitlines(True), f"a/{path}", f"b/{path}"))
    assert shown.out == expected


def test_formatting_outside_the_edits_is_kept(cli, tmp_path):
    source = ("# -*- coding: utf-8 -*-\r\n\r\n" + LD004.replace("    ", "\t")).replace("\n", "\r\n").replace("\r\r\n", "\r\n")
    source = source.replace("import torch", "import torch  # 'quotes' \"kept\"")
    after, _ = fix(cli, tmp_path, source.encode(), name="crlf_tabs.py")
    expected = source.replace("import torch", "import copy\r\nimport torch", 1).replace(
        "best = model.state_dict().copy()", "best = copy.deepcopy(model.state_dict())")
    assert after == expected


def test_encoding_bom_and_mode_are_kept(cli, tmp_path):
    source = ("# -*- coding: latin-1 -*-\n# caf\xe9\n" + LD005).encode("latin-1")
    path = tmp_path / "latin.py"
    path.write_bytes(source)
    path.chmod(0o750)
    cli("check", "--no-cache", "--fix", path)
    assert path.read_bytes() == ("# -*- coding: latin-1 -*-\n# caf\xe9\n" + LD005_FIXED).encode("latin-1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o750
    bom = tmp_path / "bom.py"
    bom.write_bytes(b"\xef\xbb\xbf" + LD005.encode())
    cli("check", "--no-cache", "--fix", bom)
    assert bom.read_bytes() == b"\xef\xbb\xbf" + LD005_FIXED.encode()


def test_a_file_changed_on_disk_is_not_written(cli, tmp_path, monkeypatch):
    import loopdoctor.static.fixing as fixing

    path = tmp_path / "a.py"
    path.write_text(LD005)
    real_fix_source = fixing.fix_source

    def fix_then_someone_edits(*args, **kwargs):
        outcome = real_fix_source(*args, **kwargs)
        path.write_text(LD005 + "# edited meanwhile\n")
        return outcome

    monkeypatch.setattr(fixing, "fix_source", fix_then_someone_edits)
    result = cli("check", "--no-cache", "--fix", path)
    assert path.read_text() == LD005 + "# edited meanwhile\n"
    assert "changed on disk since it was read; not written" in result.err and result.code == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_json_fix_field(cli, tmp_path):
    path = tmp_path / "a.py"
    path.write_text(LD005)
    finding = cli("check", "--no-cache", "--output-format", "json", path).json()[0]
    assert finding["fix"] == {
        "applicability": "safe",
        "message": "insert `grad_scaler.unscale_(opt)` before clipping",
        "edits": [{"content": "    grad_scaler.unscale_(opt)\n", "location": {"row": 6, "column": 1}, "end_location": {"row": 6, "column": 1}}],
    }
    cached = cli("check", "--cache-dir", tmp_path / "cache", "--output-format", "json", path).json()[0]
    again = cli("check", "--cache-dir", tmp_path / "cache", "--output-format", "json", path).json()[0]
    assert cached["fix"] == again["fix"] == finding["fix"]


def test_summary_mentions_available_fixes(cli, tmp_path):
    path = tmp_path / "a.py"
    path.write_text(LD002 + LD005)
    result = cli("check", "--no-cache", path)
    assert "2 fixable with `--fix`." in result.out  # the two clips
    assert "1 more fixable with `--fix --unsafe-fixes` (review those changes)." in result.out


def test_every_fixture_fix_parses_and_removes_its_finding(cli, tmp_path):
    import libcst

    flagged = [path for path in sorted(FIXTURES.rglob("*_flagged.py")) if path.name != "ld000_flagged.py"]  # it must not parse
    for source in flagged + sorted(FIXTURES.glob("ticket_trainer_*.py")):
        copy = tmp_path / source.name
        copy.write_bytes(source.read_bytes())
        before = cli("check", "--no-cache", "--output-format", "json", copy).json()
        fixable = sum(1 for f in before if f["fix"] and f["fix"]["applicability"] != "display-only")
        result = cli("check", "--no-cache", "--fix", "--unsafe-fixes", copy)
        libcst.parse_module(copy.read_text())
        after = cli("check", "--no-cache", "--output-format", "json", copy).json()
        assert len(after) == len(before) - fixable, (source.name, result.out, result.err)


# ---- notebooks ------------------------------------------------------------------------------
# Written by hand, not by json.dumps: two-space indentation, an escaped non-ASCII character, a
# source given as one string, outputs and metadata, all of which a fix must keep byte for byte.
NOTEBOOK = r'''{
  "cells": [
    {"cell_type": "markdown", "metadata": {}, "source": ["# Caf\u00e9 training\n"]},
    {
      "cell_type": "code",
      "execution_count": 1,
      "metadata": {"tags": ["setup"]},
      "outputs": [{"name": "stdout", "output_type": "stream", "text": ["ready\n"]}],
      "source": [
        "%matplotlib inline\n",
        "import torch\n",
        "\n",
        "def fit(model, loader, optimizer):\n",
        "    best = None\n",
        "    for xb in loader:\n",
        "        optimizer.zero_grad()\n",
        "        model(xb).sum().backward()\n",
        "        optimizer.step()\n",
        "        best = model.state_dict().copy()\n",
        "    return best"
      ]
    },
    {
      "cell_type": "code",
      "execution_count": 2,
      "metadata": {},
      "outputs": [],
      "source": "def step(model, loss, opt, grad_scaler):\n    grad_scaler.scale(loss).backward()\n    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n    grad_scaler.step(opt)\n    grad_scaler.update()"
    }
  ],
  "metadata": {"kernelspec": {"name": "python3"}},
  "nbformat": 4,
  "nbformat_minor": 5
}
'''


def test_notebook_fix_edits_only_the_fixed_cell_sources(cli, tmp_path):
    import json

    path = tmp_path / "train.ipynb"
    path.write_text(NOTEBOOK)
    result = cli("check", "--no-cache", "--fix", path)
    assert result.code == 0, result.out + result.err
    fixed = path.read_text()
    cells = json.loads(fixed)["cells"]
    assert cells[1]["source"] == [
        "%matplotlib inline\n", "import copy\n", "import torch\n", "\n", "def fit(model, loader, optimizer):\n",
        "    best = None\n", "    for xb in loader:\n", "        optimizer.zero_grad()\n", "        model(xb).sum().backward()\n",
        "        optimizer.step()\n", "        best = copy.deepcopy(model.state_dict())\n", "    return best",
    ]
    assert cells[2]["source"].splitlines()[2] == "    grad_scaler.unscale_(opt)"
    # Everything outside the two sources is the same text.
    for untouched in ('{"cell_type": "markdown", "metadata": {}, "source": ["# Caf\\u00e9 training\\n"]}',
                      '"outputs": [{"name": "stdout", "output_type": "stream", "text": ["ready\\n"]}],',
                      '      "metadata": {"tags": ["setup"]},\n', '  "metadata": {"kernelspec": {"name": "python3"}},\n'):
        assert untouched in fixed
    assert '        "import copy\\n",\n        "import torch\\n",\n' in fixed  # the list's own layout
    assert cli("check", "--no-cache", path).code == 0


def test_notebook_json_fix_edits_count_cell_rows_and_diff_shows_cells(cli, tmp_path):
    path = tmp_path / "train.ipynb"
    path.write_text(NOTEBOOK)
    findings = cli("check", "--no-cache", "--output-format", "json", path).json()
    ld005 = next(f for f in findings if f["code"] == "LD005")
    assert ld005["cell"] == 2 and ld005["location"]["row"] == 3
    assert ld005["fix"]["edits"] == [{"content": "    grad_scaler.unscale_(opt)\n", "location": {"row": 3, "column": 1},
                                      "end_location": {"row": 3, "column": 1}, "cell": 2}]
    ld004 = next(f for f in findings if f["code"] == "LD004")
    assert [(e["cell"], e["location"]["row"]) for e in ld004["fix"]["edits"]] == [(1, 2), (1, 10)]
    diff = cli("check", "--no-cache", "--diff", path)
    assert diff.code == 1 and path.read_text() == NOTEBOOK
    assert f"--- a/{path}:cell 2\n+++ b/{path}:cell 2\n" in diff.out and "+    grad_scaler.unscale_(opt)\n" in diff.out


def test_a_notebook_fix_that_would_touch_a_magic_line_is_not_offered(cli, tmp_path):
    import json

    document = json.loads(NOTEBOOK)
    # LD006's fix re-indents the whole loop, magic line included: magics are blanked for the
    # analysis, so such an edit cannot be mapped back and the fix is withheld.
    document["cells"][2]["source"] = [
        "def evaluate(model, val_loader):\n", "    model.eval()\n", "    for xb in val_loader:\n",
        "        !echo batch\n", "        model(xb)\n",
    ]
    path = tmp_path / "train.ipynb"
    path.write_text(json.dumps(document))
    [ld006] = [f for f in cli("check", "--no-cache", "--output-format", "json", path).json() if f["code"] == "LD006"]
    assert ld006["cell"] == 2 and ld006["fix"] is None
    document["cells"][2]["source"].remove("        !echo batch\n")
    path.write_text(json.dumps(document))
    [ld006] = [f for f in cli("check", "--no-cache", "--output-format", "json", path).json() if f["code"] == "LD006"]
    assert ld006["fix"] is not None and {e["cell"] for e in ld006["fix"]["edits"]} == {2}


def test_display_only_fixes_are_shown_and_never_applied(cli, tmp_path):
    source = (
        "import torch\n\n\ndef fit(model, loader, loss_fn, optimizer):\n    scaler = torch.amp.GradScaler()\n"
        "    for xb, yb in loader:\n        optimizer.zero_grad()\n"
        "        scaler.scale(loss_fn(model(xb), yb)).backward()\n        optimizer.step()\n"
    )
    after, result = fix(cli, tmp_path, source, "--unsafe-fixes")
    assert after == source and result.code == 1
    findings = cli("check", "--no-cache", "--output-format", "json", tmp_path / "train.py").json()
    assert [(f["code"], f["fix"]["applicability"]) for f in findings] == [("LD013", "display-only")]
    assert findings[0]["fix"]["edits"][0]["content"] == "scaler.step(optimizer)"
    full = cli("check", "--no-cache", "--unsafe-fixes", tmp_path / "train.py").out
    assert "LD013 [*]" not in full and "help: step through `scaler.step(optimizer)`" in full
    assert "fixable" not in full
