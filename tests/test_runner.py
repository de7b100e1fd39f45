"""`loopdoctor run` on unchanged scripts and modules, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURES

torch = pytest.importorskip("torch")
USER_SCRIPT = FIXTURES / "runtime" / "user_train.py"


def loopdoctor(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "loopdoctor", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("fault, stage, where", [
    ("input", "input", "input"),
    ("activation", "activation", "(model)"),
    ("loss", "loss", "loss"),
    ("gradient", "gradient", "loss"),
    ("parameter", "parameter", "encoder.0.weight"),
])
def test_user_script_faults(tmp_path, fault, stage, where):
    out = tmp_path / "diagnosis.json"
    done = loopdoctor("run", "--json-out", out, USER_SCRIPT, "--fault", fault, "--step", "3")
    assert done.returncode == 1, done.stderr
    [finding] = json.loads(out.read_text())["findings"]
    diagnosis = finding["diagnosis"]
    assert (finding["code"], finding["step"], finding["filename"]) == ("LD200", 3, str(USER_SCRIPT))
    assert (diagnosis["stage"], diagnosis["where"], diagnosis["step"]) == (stage, where, 3)
    assert f"first non-finite value: {stage}" in done.stderr
    assert "trained 8 steps" not in done.stdout  # stopped at the first finding


def test_clean_script_output_and_status_pass_through():
    plain = subprocess.run([sys.executable, str(USER_SCRIPT), "--exit-code", "3"], capture_output=True, text=True)
    watched = loopdoctor("run", USER_SCRIPT, "--exit-code", "3")
    assert watched.returncode == plain.returncode == 3
    assert watched.stdout == plain.stdout
    assert "loopdoctor" not in watched.stderr


@pytest.mark.parametrize("stage, where", [("input", "input"), ("loss", "loss"), ("parameter", "0.weight")])
def test_reference_trainer_as_a_module(tmp_path, stage, where):
    out = tmp_path / "d.json"
    done = loopdoctor("run", "--json-out", out, "-m", "loopdoctor.demo.reference", "--inject", stage, "--step", "25")
    assert done.returncode == 1
    diagnosis = json.loads(out.read_text())["findings"][0]["diagnosis"]
    assert (diagnosis["stage"], diagnosis["where"], diagnosis["step"]) == (stage, where, 25)


def test_module_with_relative_imports_and_argv(tmp_path):
    package = tmp_path / "proj"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("from torch import nn\n\ndef build():\n    return nn.Linear(2, 1)\n")
    (package / "train.py").write_text(
        "import sys\nimport torch\nfrom .model import build\n"
        "model = build()\nopt = torch.optim.SGD(model.parameters(), lr=float(sys.argv[1]))\n"
        "for _ in range(3):\n    opt.zero_grad()\n    model(torch.ones(4, 2)).pow(2).sum().backward()\n    opt.step()\n"
        "print('argv', sys.argv[1:], 'name', __name__)\n"
    )
    clean = loopdoctor("run", "-m", "proj.train", "0.1", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.strip() == "argv ['0.1'] name __main__"
    exploding = loopdoctor("run", "-m", "proj.train", "inf", cwd=tmp_path)
    assert exploding.returncode == 1 and "parameter at weight, step 0" in exploding.stderr


def test_stages_option_and_warn_mode(tmp_path):
    only_parameters = loopdoctor("run", "--stages", "parameter", USER_SCRIPT, "--fault", "input", "--step", "2")
    # With the input stage off, the NaN is first seen where it reaches the parameters.
    assert only_parameters.returncode == 1 and "parameter at" in only_parameters.stderr
    warned = loopdoctor("run", "--warn", USER_SCRIPT, "--fault", "loss", "--step", "2")
    assert warned.returncode == 0
    assert "trained 8 steps" in warned.stdout and "first non-finite value: loss, step 2" in warned.stderr
    bad = loopdoctor("run", "--stages", "weights", USER_SCRIPT)
    assert bad.returncode == 2 and "unknown stage" in bad.stderr


def test_script_errors_keep_their_traceback(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("def load():\n    raise ValueError('broken config')\n\nload()\n")
    done = loopdoctor("run", script)
    assert done.returncode == 1 and "ValueError: broken config" in done.stderr
    # As `python boom.py` shows it: the script's frames only.
    assert done.stderr.startswith(f'Traceback (most recent call last):\n  File "{script}", line 4, in <module>\n')
    assert "runpy" not in done.stderr and "runner.py" not in done.stderr


@pytest.mark.parametrize("args, message", [
    (["missing.py"], "error: cannot open the script missing.py: no such file"),
    (["-m", "nosuchmod"], "error: No module named nosuchmod"),
    (["--json-out", "/no/such/x.json", "script.py"], "error: --json-out /no/such/x.json: the directory /no/such does not exist"),
])
def test_user_errors_are_one_line_without_traceback(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "script.py").write_text("print('ran')\n")
    result = cli("run", *args)
    assert result.code == 2 and result.err.strip() == message and result.out == ""


def test_warn_prints_each_diagnosis_once(cli, tmp_path):
    result = cli("run", "--warn", USER_SCRIPT, "--fault", "loss", "--step", "2")
    assert result.code == 0 and result.err.count("first non-finite value: loss, step 2") == 1


def test_a_crash_caused_by_a_nan_carries_the_diagnosis(cli, tmp_path):
    """pytorch/examples' VAE with one NaN pixel: BCE rejects the NaN before any step checks it."""
    script = tmp_path / "vae.py"
    script.write_text(
        "import torch\nmodel = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Sigmoid())\n"
        "x = torch.rand(2, 4)\nx[0, 0] = float('nan')\nrecon = model(x)\n"
        "torch.nn.functional.binary_cross_entropy(recon, x.clamp(0, 1))\n"
    )
    result = cli("run", script)
    assert result.code == 1
    assert "RuntimeError: all elements of input should be between 0 and 1" in result.err
    assert "loopdoctor: a non-finite value preceded this error:\nfirst non-finite value: input, step 0, batch 0" in result.err


def test_global_hooks_are_gone_after_the_run():
    from loopdoctor.runtime import GlobalWatch
    from loopdoctor.demo.reference import TicketTrainer

    original = torch.amp.GradScaler.scale
    with GlobalWatch():
        TicketTrainer().train_epoch()
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
    from torch.optim import optimizer as optimizer_module

    assert not optimizer_module._global_optimizer_pre_hooks and not optimizer_module._global_optimizer_post_hooks
    assert torch.amp.GradScaler.scale is original
