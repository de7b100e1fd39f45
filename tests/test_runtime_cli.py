"""`loopdoctor demo` and `loopdoctor triage` through the real CLI."""

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")


def test_demo_json_receipt_reproduces_the_article(cli):
    result = cli("demo", "--json")
    assert result.code == 0
    receipt = json.loads(result.out)
    assert round(receipt["val_loss"][0], 6) == 0.535825
    assert round(receipt["val_loss"][59], 6) == 0.011815
    assert receipt["best_epoch"] == 60
    assert round(receipt["best_val_loss"], 6) == 0.011815
    assert receipt["selected_accuracy"] == 1.0
    assert receipt["saved_tensors"] == 4
    assert receipt["labels"] == ["standard", "escalate"] and receipt["features"] == ["urgency", "negative_sentiment"]
    assert receipt["split"]["train_rows"] == 8 and len(receipt["split"]["identity"]) == 16


def test_demo_checkpoint_reloads_with_weights_only(cli, tmp_path):
    path = tmp_path / "router.pt"
    assert cli("demo", "--checkpoint", path).code == 0
    checkpoint = torch.load(path, weights_only=True)
    assert len(checkpoint["model_state_dict"]) == 4
    assert checkpoint["receipt"]["selection_metric"] == "lowest validation cross-entropy"
    from loopdoctor.demo.reference import load_checkpoint, ticket_data

    model, _ = load_checkpoint(str(path))
    _, _, val_x, val_y = ticket_data()
    assert torch.equal(model(val_x).argmax(dim=1), val_y)


def test_demo_table(cli):
    result = cli("demo")
    assert "0.535825" in result.out and "0.011815" in result.out and "saved tensors" in result.out


def test_demo_plot(cli, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert cli("demo", "--plot", path).code == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_overfit_one_batch_matches_listing_06():
    from loopdoctor.demo.reference import overfit_one_batch

    result = overfit_one_batch()
    assert round(result["initial_loss"], 4) == 0.6521
    assert round(result["final_loss"], 4) == 0.0056
    assert result["accuracy"] == 1.0


@pytest.mark.parametrize(
    "stage, where",
    [("input", "input"), ("activation", "0"), ("loss", "loss"), ("gradient", "loss"), ("parameter", "0.weight")],
)
@pytest.mark.parametrize("step", [0, 5, 25])
def test_triage_json(cli, stage, where, step):
    """Every stage's fault is reported at the step it was injected in, early steps included."""
    result = cli("triage", "--inject", stage, "--step", str(step), "--json")
    assert result.code == 1
    diagnosis = json.loads(result.out)
    assert (diagnosis["stage"], diagnosis["where"], diagnosis["step"], diagnosis["batch"]) == (stage, where, step, step)


@pytest.mark.parametrize("step", ["120", "500", "-1"])
def test_triage_step_outside_the_run_is_an_error(cli, step):
    result = cli("triage", "--inject", "loss", "--step", step)
    assert result.code == 2 and "--step must be between 0 and 119" in result.err


def test_triage_text_and_clean_run(cli):
    result = cli("triage", "--inject", "parameter")
    assert result.code == 1
    assert "injected at step 20" in result.out and "parameter at 0.weight, step 20" in result.out
    assert "likely cause" in result.out
    clean = cli("triage")
    assert clean.code == 0 and "no non-finite value in 120 optimizer steps" in clean.out


def test_python_dash_m_loopdoctor_reference_prints_receipt():
    done = subprocess.run([sys.executable, "-m", "loopdoctor.demo.reference"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0
    assert round(json.loads(done.stdout)["val_loss"][0], 6) == 0.535825


@pytest.mark.parametrize("option", ["--plot", "--checkpoint"])
def test_demo_output_into_a_missing_directory_is_an_error_before_training(cli, option):
    result = cli("demo", option, "/no/such/dir/out.file")
    assert result.code == 2 and result.out == ""
    assert result.err.strip() == f"error: {option} /no/such/dir/out.file: the directory /no/such/dir does not exist"


def test_runtime_commands_without_torch_say_how_to_install_it():
    import subprocess
    import sys

    probe = (
        "import sys; sys.modules['torch'] = None\n"  # as if torch were not installed
        "from loopdoctor.cli import main\n"
        "codes = [main([command]) for command in ('demo', 'triage', 'run')]\n"
        "print(codes)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[2, 2, 2]", done.stderr
    for command in ("demo", "triage", "run"):
        assert f"error: `loopdoctor {command}` needs torch, which is not installed: pip install 'loopdoctor[runtime]'" in done.stderr
    assert "Traceback" not in done.stderr
