"""Under torchrun with DistributedDataParallel (gloo, two CPU processes), the report names the rank
where the value first appeared, not the rank that received it through the all-reduce."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES

torch = pytest.importorskip("torch")
TORCHRUN = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
pytestmark = pytest.mark.skipif(not os.path.exists(TORCHRUN) or not torch.distributed.is_available(),
                                reason="torchrun / torch.distributed unavailable")


def torchrun(tmp_path, *target):
    out = tmp_path / "diagnosis.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "LOOPDOCTOR_RUN_DIR": str(tmp_path / "ranks")}
    done = subprocess.run(
        [TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "loopdoctor", "run", "--json-out", str(out), *map(str, target)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    findings = json.loads(out.read_text())["findings"] if out.exists() else []
    return done, next((f["diagnosis"] for f in findings if f["code"] == "LD200"), None)


@pytest.mark.parametrize("fault_rank", [0, 1])
def test_user_script_nan_input_on_one_rank(tmp_path, fault_rank):
    done, diagnosis = torchrun(tmp_path, FIXTURES / "runtime" / "user_train.py", "--fault", "input", "--step", "3",
                               "--fault-rank", fault_rank)
    assert done.returncode != 0
    assert (diagnosis["stage"], diagnosis["step"], diagnosis["rank"]) == ("input", 3, fault_rank)
    other = 1 - fault_rank
    assert f"on rank {fault_rank}" in done.stdout + done.stderr
    assert f"reported by rank {other}, which received it through the gradient all-reduce" in done.stdout + done.stderr


def test_reference_trainer_under_ddp(tmp_path):
    done, diagnosis = torchrun(tmp_path, "-m", "loopdoctor.demo.reference", "--inject", "loss", "--step", "10", "--fault-rank", "1")
    assert done.returncode != 0
    assert (diagnosis["stage"], diagnosis["where"], diagnosis["step"], diagnosis["rank"]) == ("loss", "loss", 10, 1)


def test_clean_ddp_run_passes_through(tmp_path):
    done, diagnosis = torchrun(tmp_path, FIXTURES / "runtime" / "user_train.py")
    assert done.returncode == 0, done.stderr
    assert diagnosis is None
    assert "rank 0: trained 8 steps" in done.stdout and "rank 1: trained 8 steps" in done.stdout


def test_replicas_drifting_apart_name_the_ranks(tmp_path):
    script = FIXTURES / "runtime" / "loop" / "ld203_flagged.py"
    out = tmp_path / "findings.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "LOOPDOCTOR_RUN_DIR": str(tmp_path / "ranks")}
    done = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "loopdoctor", "run", "--json-out", str(out), str(script)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode != 0
    [finding] = json.loads(out.read_text())["findings"]
    assert (finding["code"], finding["step"], finding["line"]) == ("LD203", 1, 18)
    assert "the parameters of rank(s) 1 differ from rank 0's" in finding["message"]
    clean = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node=2", "-m", "loopdoctor", "run",
                            str(FIXTURES / "runtime" / "loop" / "ld203_clean.py")],
                           capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
