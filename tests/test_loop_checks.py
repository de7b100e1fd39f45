"""The loop checks at run time: every code trips on its fixture, at the user's line and step, and
stays silent on the clean twin; the findings reach `watch()`, `loopdoctor run` and pytest."""

import contextlib
import io
import json
import re
import runpy
import subprocess
import sys
import warnings

import pytest

from conftest import FIXTURES

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import loopdoctor  # noqa: E402
from loopdoctor.runtime import GlobalWatch, LoopFinding, LoopWarning  # noqa: E402
from loopdoctor.runtime.checks import RUNTIME_CODES  # noqa: E402

LOOP_FIXTURES = FIXTURES / "runtime" / "loop"
EXPECT_RUN = re.compile(r"expect-run: (LD\d{3}) step=(\d+)")
SINGLE_PROCESS_CODES = sorted(set(RUNTIME_CODES) - {"LD203"})  # LD203 needs torchrun: tests/test_ddp.py


def expected_at_run_time(path):
    return sorted((m.group(1), int(m.group(2)), row)
                  for row, line in enumerate(path.read_text().splitlines(), 1) for m in EXPECT_RUN.finditer(line))


def run_fixture(path, **options):
    watch = GlobalWatch(mode="record", loop_warnings=False, **options)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with watch:
            runpy.run_path(str(path), run_name="__main__")
    assert watch.recorder.internal_errors == []
    return watch


@pytest.mark.parametrize("code", SINGLE_PROCESS_CODES)
def test_each_code_trips_on_its_fixture_at_the_users_line(code):
    path = LOOP_FIXTURES / f"{code.lower()}_flagged.py"
    expected = expected_at_run_time(path)
    assert expected and {c for c, _, _ in expected} == {code}
    watch = run_fixture(path)
    assert sorted((f.code, f.step, f.line) for f in watch.findings) == expected
    assert {f.filename for f in watch.findings} == {str(path)}


@pytest.mark.parametrize("code", SINGLE_PROCESS_CODES)
def test_the_clean_twin_is_silent(code):
    assert run_fixture(LOOP_FIXTURES / f"{code.lower()}_clean.py").findings == []


def test_every_run_time_code_has_a_fixture_pair():
    for code in RUNTIME_CODES:
        assert (LOOP_FIXTURES / f"{code.lower()}_flagged.py").exists() and (LOOP_FIXTURES / f"{code.lower()}_clean.py").exists()


def test_select_and_ignore():
    path = LOOP_FIXTURES / "ld002_flagged.py"
    assert [f.code for f in run_fixture(path, select=["LD002"]).findings] == ["LD002"]
    assert run_fixture(path, ignore=["LD00"]).findings == []
    with pytest.raises(ValueError, match="LD999"):
        GlobalWatch(select=["LD999"])


def train(model, optimizer, steps, clear=True):
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    for _ in range(steps):
        if clear:
            optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_watch_collects_findings_and_warns_with_a_filterable_class():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(LoopWarning, match=r"LD002 \[zero-grad-outside-batch-loop\]"):
        with loopdoctor.watch(model, optimizer) as watch:
            train(model, optimizer, steps=3, clear=False)
    [finding] = watch.findings
    assert isinstance(finding, LoopFinding) and (finding.code, finding.step, finding.filename) == ("LD002", 1, __file__)
    assert watch.diagnosis is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with loopdoctor.watch(model, optimizer, mode="record") as quiet:
            train(model, optimizer, steps=3, clear=False)
    assert [f.code for f in quiet.findings] == ["LD002"]


def test_a_mistake_inside_the_loop_is_reported_once_per_call_site():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with loopdoctor.watch(model, optimizer, mode="record") as watch:
        train(model, optimizer, steps=6, clear=False)
    assert [f.code for f in watch.findings] == ["LD002"]


def test_patches_and_hooks_are_gone_after_the_watch_even_after_an_error():
    originals = (nn.functional.cross_entropy, torch.optim.Optimizer.zero_grad, nn.Module.load_state_dict,
                 torch.nn.utils.clip_grad_norm_, torch.amp.GradScaler.unscale_, torch.optim.lr_scheduler.StepLR.step,
                 torch.autograd.backward, nn.Module.__call__)
    model = nn.Linear(4, 2)
    with pytest.raises(KeyError):
        with GlobalWatch():
            train(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=1)
            raise KeyError("boom")
    after = (nn.functional.cross_entropy, torch.optim.Optimizer.zero_grad, nn.Module.load_state_dict,
             torch.nn.utils.clip_grad_norm_, torch.amp.GradScaler.unscale_, torch.optim.lr_scheduler.StepLR.step,
             torch.autograd.backward, nn.Module.__call__)
    assert after == originals
    assert not nn.modules.module._global_forward_hooks and not nn.modules.module._global_forward_pre_hooks


def test_numerics_are_bitwise_identical_under_the_watch():
    def trained(watched):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 2))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        with GlobalWatch(mode="record") if watched else contextlib.nullcontext():
            train(model, optimizer, steps=4)
            nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(trained(False), trained(True))


def loopdoctor_cli(*args):
    return subprocess.run([sys.executable, "-m", "loopdoctor", *map(str, args)], capture_output=True, text=True, timeout=120)


def test_loopdoctor_run_prints_each_finding_and_writes_the_findings_array(tmp_path):
    out = tmp_path / "findings.json"
    script = LOOP_FIXTURES / "ld002_flagged.py"
    done = loopdoctor_cli("run", "--json-out", out, script)
    assert done.returncode == 1
    assert f"{script.relative_to(FIXTURES.parent)}:14: LD002 [zero-grad-outside-batch-loop]" in done.stderr.replace(str(FIXTURES.parent) + "/", "")
    assert "14 | optimizer.step()" in done.stderr and "= help: call `optimizer.zero_grad()` inside the batch loop" in done.stderr
    assert "loopdoctor: 1 finding(s)" in done.stderr
    [finding] = json.loads(out.read_text())["findings"]
    assert {k: finding[k] for k in ("code", "name", "filename", "line", "step")} == {
        "code": "LD002", "name": "zero-grad-outside-batch-loop", "filename": str(script), "line": 14, "step": 1}
    assert finding["message"].startswith("`Adam.step()` uses gradients that were not cleared")
    assert loopdoctor_cli("run", "--warn", script).returncode == 0  # --warn: the script's own status
    assert loopdoctor_cli("run", "--ignore", "LD002", script).returncode == 0
    unknown = loopdoctor_cli("run", "--select", "LD999", script)
    assert unknown.returncode == 2 and "unknown code LD999" in unknown.stderr


def test_loopdoctor_run_dash_m(tmp_path):
    (tmp_path / "trainer.py").write_text((LOOP_FIXTURES / "ld009_flagged.py").read_text())
    done = subprocess.run([sys.executable, "-m", "loopdoctor", "run", "-m", "trainer"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 1 and "trainer.py:13: LD009 [zero-grad-between-backward-and-step]" in done.stderr


def test_pytest_plugin_fails_a_test_with_a_loop_mistake(pytester):
    pytester.makepyfile(test_training="""
import torch
from torch import nn

def test_training():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    for _ in range(3):
        scheduler.step()
        optimizer.zero_grad()
        model(torch.ones(2, 4)).sum().backward()
        optimizer.step()
""")
    result = pytester.runpytest_inprocess("--loopdoctor", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_training.py:9: LD014 [[]scheduler-before-optimizer-step[]]*(step 0)*"])


def test_after_the_first_steps_the_gradient_checks_look_at_every_16th():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with loopdoctor.watch(model, optimizer, mode="record") as watch:
        for step in range(130):
            if step < 100:  # clearing stops at step 100: seen at the next sampled step, 112
                optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    assert [(f.code, f.step) for f in watch.findings] == [("LD002", 112)]


def test_a_check_that_fails_is_skipped_with_one_warning_and_never_breaks_training(monkeypatch):
    from loopdoctor.runtime.checks.ld002_zero_grad_outside_batch_loop import GradientsNotCleared

    def broken(self, optimizer):
        raise ZeroDivisionError("a bug in a check")

    monkeypatch.setattr(GradientsNotCleared, "on_post_step", broken)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.warns(RuntimeWarning, match="internal error in GradientsNotCleared: ZeroDivisionError") as caught:
        with loopdoctor.watch(model, optimizer, mode="record") as watch:
            train(model, optimizer, steps=5, clear=False)
    assert len([w for w in caught if "internal error" in str(w.message)]) == 1
    assert watch.recorder.internal_errors and watch.findings == []
