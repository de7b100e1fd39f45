"""Steps per second unwatched, under `loopdoctor.watch`, under the global watch of `loopdoctor
run` / `pytest --loopdoctor`, and under `torch.autograd.detect_anomaly`; then the same against
the number of modules, and the memory that gradient accumulation holds.

    python benchmarks/runtime_overhead.py [--steps N] [--rounds R] [--skip-memory] [--workloads ...]

The modes run in this one process on the same model and batches, interleaved round by round;
each mode keeps its best round. The module-count curve is a stack of N Linear(16, 16) + Tanh
pairs (tiny layers, where the fixed cost per module shows). The memory figure runs one
subprocess per mode (16 accumulation micro-batches of an MLP with large activations) and reports
the growth of its peak RSS over the same process's RSS before the loop. `--workloads breakdown`
times the parts of the global watch (LD200's stages, the loop checks) on the reference trainer.
Targets (issue 12), with every check on: at most 1.05x unwatched on the transformer and 1.5x on
the reference trainer, and cheaper than detect_anomaly everywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import subprocess
import sys
import time
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import loopdoctor  # noqa: E402
from loopdoctor.demo.reference import TicketTrainer  # noqa: E402
from loopdoctor.runtime import GlobalWatch  # noqa: E402


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


def deep_workload(layers: int):
    def make(steps: int):
        torch.manual_seed(0)
        model = nn.Sequential(*[module for _ in range(layers) for module in (nn.Linear(16, 16), nn.Tanh())])
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        x = torch.randn(8, 16)

        def run():
            for _ in range(steps):
                optimizer.zero_grad()
                model(x).pow(2).mean().backward()
                optimizer.step()

        return model, optimizer, run, steps

    return make


def timed(run, count: int, context) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # detect_anomaly warns that it is slow
        with context():
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
    return count / elapsed


def measure(make, steps: int, rounds: int, breakdown: bool = False) -> dict[str, float]:
    """One model, every mode, interleaved round by round; the best round of each mode."""
    model, optimizer, run, count = make(steps)
    contexts = {
        "unwatched": contextlib.nullcontext,
        "watched": lambda: loopdoctor.watch(model, optimizer),
        "run (global)": GlobalWatch,
        "loop checks only": lambda: GlobalWatch(ignore=["LD200"]),
        "detect_anomaly": torch.autograd.detect_anomaly,
    }
    if breakdown:  # what each part of the global watch costs on its own
        contexts = {
            "unwatched": contextlib.nullcontext,
            "LD200, all stages": lambda: GlobalWatch(select=["LD200"]),
            "LD200, loss+parameter": lambda: GlobalWatch(select=["LD200"], stages=["loss", "parameter"]),
            "LD200, activation": lambda: GlobalWatch(select=["LD200"], stages=["activation"]),
            "LD200, gradient": lambda: GlobalWatch(select=["LD200"], stages=["gradient"]),
            "loop checks only": lambda: GlobalWatch(ignore=["LD200"]),
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
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--workloads", default="reference,transformer,modules",
                        help="which to run, comma-separated: reference, transformer, modules, breakdown")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    chosen = args.workloads.split(",")
    workloads = [
        ("reference ticket trainer", reference_workload, args.reference_steps, "reference"),
        ("4-layer transformer d=256 seq=128 batch=16", transformer_workload, args.steps, "transformer"),
        ("reference ticket trainer, the global watch's parts", reference_workload, args.reference_steps, "breakdown"),
    ]
    for title, make, steps, key in workloads:
        if key not in chosen:
            continue
        best = measure(make, steps, args.rounds, breakdown=key == "breakdown")
        base = best["unwatched"]
        print(f"\n{title}")
        for mode, rate in best.items():
            extra = (1 / rate - 1 / base) * 1e6
            print(f"  {mode:22s} {rate:10.2f} steps/s   time ratio {base / rate:.3f}x   {extra:+8.0f} us/step")
    print("\nmodule count (N x (Linear(16,16) + Tanh), batch 8): time ratio to unwatched; watched cost per module")
    for layers in (10, 50, 200) if "modules" in chosen else ():
        best = measure(deep_workload(layers), 20, args.rounds)
        base = best["unwatched"]
        ratios = "  ".join(f"{mode} {base / rate:.2f}x" for mode, rate in best.items() if mode != "unwatched")
        per_module = (1 / best["watched"] - 1 / base) / (2 * layers) * 1e6
        print(f"  {2 * layers:4d} modules  unwatched {1e3 / base:6.2f} ms/step  {ratios}  ({per_module:.0f} us/module)")
    if not args.skip_memory:
        print("\ngradient accumulation, 16 micro-batches of an 8-layer MLP (batch 256, width 1024): peak RSS growth")
        for mode in ("unwatched", "watched", "run (global)", "detect_anomaly"):
            done = subprocess.run([sys.executable, __file__, "--memory-child", mode], capture_output=True, text=True, check=True)
            print(f"  {mode:15s} {float(done.stdout):8.1f} MiB")


def memory_child(mode: str) -> None:
    """One mode's accumulation loop, in a process of its own: print its peak RSS growth in MiB."""
    torch.manual_seed(0)
    model = nn.Sequential(*[module for _ in range(8) for module in (nn.Linear(1024, 1024), nn.GELU())])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    batches = [torch.randn(256, 1024) for _ in range(16)]
    contexts = {
        "unwatched": contextlib.nullcontext, "watched": lambda: loopdoctor.watch(model, optimizer),
        "run (global)": GlobalWatch, "detect_anomaly": torch.autograd.detect_anomaly,
    }
    optimizer.zero_grad()
    model(batches[0]).pow(2).mean().backward()  # allocate gradients and warm up before measuring
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contexts[mode]():
            for _ in range(2):
                optimizer.zero_grad()
                for x in batches:
                    (model(x).pow(2).mean() / len(batches)).backward()
                optimizer.step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)


if __name__ == "__main__":
    main()
