"""Which rank did the first non-finite value come from?

After DistributedDataParallel's gradient all-reduce every rank holds the same non-finite
gradients, so the rank that notices first is not necessarily the culprit. Each rank with a
finding writes it to a directory shared by the ranks of this run (one per node: torchrun's agent
process is every rank's parent); after a short wait for the others, the finding with the earliest
stage (input before activation before ... before parameter), then the earliest step, then the
lowest rank, names the origin. Files older than this process belong to an earlier run that used
the same directory and are ignored (every rank of a run starts before any of them can report).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace

from loopdoctor.runtime.diagnosis import STAGES, Diagnosis, TensorStats

WAIT_SECONDS = 5.0
STARTED = time.time()  # about when this rank's process started: loopdoctor run imports this first


def origin_diagnosis(diagnosis: Diagnosis) -> Diagnosis:
    """The diagnosis of the rank where the value first appeared (``diagnosis`` itself when not distributed)."""
    if diagnosis.rank is None:
        return diagnosis
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    found = [diagnosis]
    for data in gather_from_ranks("diagnosis", diagnosis.rank, world_size, diagnosis.to_dict()).values():
        try:
            found.append(from_dict(data))
        except (TypeError, AttributeError):
            continue  # not a diagnosis this version wrote
    origin = min(found, key=lambda d: (STAGES.index(d.stage), d.step, d.rank))
    if origin.rank == diagnosis.rank:
        return diagnosis
    note = f"reported by rank {diagnosis.rank}, which received it through the gradient all-reduce"
    return replace(origin, detail="; ".join(filter(None, [origin.detail, note])))


def shared_directory() -> str:
    run = os.environ.get("LOOPDOCTOR_RUN_DIR")
    if run:
        return run
    key = f"{os.getppid()}-{os.environ.get('MASTER_PORT', '0')}"
    return os.path.join(tempfile.gettempdir(), f"loopdoctor-ddp-{key}")


def from_dict(data: dict) -> Diagnosis:
    stats = data.pop("stats", None)
    for key in ("loss_history", "grad_norm_history"):
        data[key] = [float(v) for v in data.get(key, [])]
    return Diagnosis(stats=TensorStats(**stats) if stats else None, **data)


def gather_from_ranks(kind: str, rank: int, world_size: int, payload: dict) -> dict[int, dict]:
    """Every rank's ``payload`` of this ``kind``, exchanged through the shared directory (waiting
    up to WAIT_SECONDS for the others; a rank that never wrote, or wrote before this process
    started, is missing from the result). Written through a temporary file: no half file is read."""
    directory = shared_directory()
    os.makedirs(directory, exist_ok=True)
    mine = os.path.join(directory, f"{kind}-rank{rank}.json")
    with open(mine + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(mine + ".tmp", mine)
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = {}
        for other in range(world_size):
            path = os.path.join(directory, f"{kind}-rank{other}.json")
            try:
                if os.stat(path).st_mtime >= STARTED:
                    with open(path, encoding="utf-8") as handle:
                        found[other] = json.load(handle)
            except (OSError, ValueError, TypeError):
                continue
        if len(found) >= world_size or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
