"""Steps per second unwatched, under `loopdoctor.watch`, and under `torch.autograd.detect_anomaly`.

    python benchmarks/runtime_overhead.py [--steps N] [--rounds R]

The three modes run in this one process on the same model and batches, interleaved round by
round; each mode keeps its best round. Targets: watched at most 1.10x unwatched on
the mid-size model, and cheaper than detect_anomaly on both workloads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import loopdoctor  # noqa: E402
from loopdoctor.demo.reference import TicketTrainer  # noqa: E402


def mid_size_model() -> nn.Module:
    layer = nn.TransformerEncoderLayer(256, nhead=4, dim_feedforward=1024, dropout=0.1, batch_first=True)
    return nn.Sequential(nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False), nn.Linear(256, 8))


def transformer_workload(steps: int):
    torch.manual_seed(0)
    model = mid_size_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(16, 128, 256)
    y = torch.randint(0, 8, (16,))

    def run():
        for _ in range(steps):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x).mean(dim=1), y)
            loss.backward()
            optimizer.step()

    return model, optimizer, run, steps


def reference_workload(steps: int):
    trainer = TicketTrainer()
    epochs = max(steps // 2, 1)

    def run():
        for _ in range(epochs):
            trainer.train_epoch()
            trainer.validate()

    return trainer.model, trainer.optimizer, run, epochs * 2


def timed(run, count: int, context) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # detect_anomaly warns that it is slow
        with context():
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
    return count / elapsed


def measure(make, steps: int, rounds: int) -> dict[str, float]:
    """One model, three modes, interleaved round by round; the best round of each mode."""
    model, optimizer, run, count = make(steps)
    contexts = {
        "unwatched": contextlib.nullcontext,
        "watched": lambda: loopdoctor.watch(model, optimizer),
        "detect_anomaly": torch.autograd.detect_anomaly,
    }
    for context in contexts.values():  # warm-up
        timed(run, count, context)
    best = dict.fromkeys(contexts, 0.0)
    for _ in range(rounds):
        for mode, context in contexts.items():
            best[mode] = max(best[mode], timed(run, count, context))
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4, help="mid-size model steps per round")
    parser.add_argument("--reference-steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    workloads = [
        ("reference ticket trainer", reference_workload, args.reference_steps),
        ("4-layer transformer d=256 seq=128 batch=16", transformer_workload, args.steps),
    ]
    for title, make, steps in workloads:
        best = measure(make, steps, args.rounds)
        base = best["unwatched"]
        print(f"\n{title}")
        for mode, rate in best.items():
            print(f"  {mode:15s} {rate:10.2f} steps/s   time ratio {base / rate:.3f}x")


if __name__ == "__main__":
    main()
