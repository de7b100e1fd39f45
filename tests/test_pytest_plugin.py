"""The pytest plugin, exercised with pytest's own pytester."""

import pytest

pytest.importorskip("torch")

TRAINING = """
import torch
import pytest

def train(fault_step=None, steps=3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        x = torch.ones(4, 2)
        if step == fault_step:
            x[0, 1] = float("nan")
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), torch.zeros(4, 1)).backward()
        opt.step()
    return model
"""


def test_option_fails_the_test_with_a_report_section_and_summary(pytester):
    pytester.makepyfile(TRAINING + """
def test_clean():
    train()

def test_nan_batch():
    train(fault_step=1)
""")
    result = pytester.runpytest_subprocess("--loopdoctor", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*Captured loopdoctor call*",
        "first non-finite value: input, step 1, batch 1",
        "tensor (4, 2) float32: 1 NaN, 0 +Inf, 0 -Inf*",
        "likely cause: bad data*",
        "*= loopdoctor =*",
        "test_option_fails_the_test_with_a_report_section_and_summary.py::test_nan_batch: first non-finite value: input, step 1, batch 1",
    ])


def test_warn_records_without_failing(pytester):
    pytester.makepyfile(TRAINING + """
def test_nan_batch():
    train(fault_step=2)
""")
    result = pytester.runpytest_subprocess("--loopdoctor", "--loopdoctor-mode=warn", "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*::test_nan_batch: first non-finite value: input, step 2, batch 2"])


def test_a_swallowed_error_still_fails_the_test(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    pytester.makepyfile(TRAINING + """
def test_swallows():
    try:
        train(fault_step=0)
    except Exception:
        pass
""")
    result = pytester.runpytest_subprocess("--loopdoctor", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_swallows - Failed: first non-finite value: input, step 0, batch 0"])


def test_without_the_option_nothing_is_hooked_and_nan_passes(pytester):
    pytester.makepyfile(TRAINING + """
def test_nan_is_not_noticed():
    train(fault_step=1)
    from torch.nn.modules import module
    assert not module._global_forward_hooks and not module._global_forward_pre_hooks
    assert torch.autograd.backward.__module__ == "torch.autograd"

def test_torch_not_imported_by_the_plugin():
    import sys
    # This file imports torch itself; the plugin must not have done so before collection.
    assert "loopdoctor.runtime" not in sys.modules
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_plugin_import_does_not_import_torch(pytester):
    pytester.makepyfile("""
import sys

def test_no_torch():
    assert "torch" not in sys.modules
""")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_marker_turns_watching_on_for_one_test(pytester, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    pytester.makepyfile(TRAINING + """
@pytest.mark.loopdoctor
def test_marked():
    train(fault_step=1)

def test_unmarked():
    train(fault_step=1)

@pytest.mark.loopdoctor(mode="warn")
def test_marked_warn():
    train(fault_step=1)
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["FAILED *::test_marked - Failed: first non-finite value: input, step 1, batch 1"])


def test_fixture_watches_what_it_is_given(pytester):
    pytester.makepyfile(TRAINING + """
def test_fixture(loopdoctor):
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=float("inf"))
    watch = loopdoctor.watch(model, opt, mode="warn")
    opt.zero_grad()
    model(torch.ones(3, 2)).sum().backward()
    opt.step()
    assert [(d.stage, d.where, d.step) for d in loopdoctor.findings] == [("parameter", "weight", 0)]

def test_fixture_raises_by_default(loopdoctor):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loopdoctor.watch(model, opt)
    with pytest.raises(Exception, match="first non-finite value: input"):
        model(torch.full((1, 2), float("nan")))
        opt.step()
""")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_reference_trainer_and_user_script_under_the_option(pytester):
    from conftest import FIXTURES

    pytester.makepyfile(f"""
import runpy
import sys

from loopdoctor.demo.reference import TicketTrainer
from loopdoctor.demo.faults import make_fault


def test_reference_with_fault():
    TicketTrainer(fault=make_fault("parameter", 7)).fit()


def test_user_script_with_fault(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["user_train.py", "--fault", "loss", "--step", "2"])
    runpy.run_path({str(FIXTURES / "runtime" / "user_train.py")!r}, run_name="__main__")
""")
    result = pytester.runpytest_subprocess("--loopdoctor", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*::test_reference_with_fault: first non-finite value: parameter at 0.weight, step 7, batch 7",
        "*::test_user_script_with_fault: first non-finite value: loss, step 2, batch 2",
    ])


def test_flag_before_a_path_ini_mode_last_forward_and_one_report(pytester, monkeypatch):
    """`--loopdoctor tests/` is a flag and a path; the ini file sets the mode; a NaN in a test's
    last forward pass (no step follows) is found; each diagnosis is shown once, in the report
    section, without loopdoctor's frames; a crash that a NaN caused gets the diagnosis as a note."""
    pytester.makeini("[pytest]\nloopdoctor_mode = raise\n")
    tests = pytester.mkdir("suite")
    (tests / "test_x.py").write_text(TRAINING + """
def test_last_forward():
    model = torch.nn.Linear(2, 1)
    model(torch.full((1, 2), float("nan")))

def test_nan_batch():
    train(fault_step=1)

def test_crash_after_nan():
    model = torch.nn.Linear(2, 1)
    out = torch.sigmoid(model(torch.full((1, 2), float("nan"))))
    torch.nn.functional.binary_cross_entropy(out, torch.ones(1, 1))
""")
    monkeypatch.setenv("COLUMNS", "200")  # short summary lines untruncated
    result = pytester.runpytest_subprocess("--loopdoctor", "suite", "-p", "no:cacheprovider", "-rf")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "FAILED suite/test_x.py::test_last_forward - Failed: first non-finite value: input, step 0, batch 0",
        "FAILED suite/test_x.py::test_nan_batch - Failed: first non-finite value: input, step 1, batch 1",
        "FAILED suite/test_x.py::test_crash_after_nan - RuntimeError: *",
    ])
    assert out.count("tensor (4, 2) float32: 1 NaN") == 1  # test_nan_batch's diagnosis, once
    assert "loopdoctor: a non-finite value preceded this error:" in out
    assert "watch.py" not in out and "global_watch.py" not in out


def test_ini_mode_warn_and_a_bad_mode(pytester):
    pytester.makepyfile(TRAINING + "\ndef test_nan():\n    train(fault_step=1)\n")
    pytester.makeini("[pytest]\nloopdoctor_mode = warn\n")
    pytester.runpytest_subprocess("--loopdoctor", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nloopdoctor_mode = loud\n")
    result = pytester.runpytest_subprocess("--loopdoctor", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*loopdoctor_mode must be raise or warn, not 'loud'*"])
