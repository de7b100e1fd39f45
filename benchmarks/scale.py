"""Whole-tree speed: bare libcst, loopdoctor cold (1 job and all cores), warm, and TorchFix.

    python benchmarks/scale.py --torchfix /path/to/venv/bin/torchfix [TRAINING_DIR ...]

Two trees, each measured in this one run: the installed torch package's Python sources, and a
training-code corpus (the directories given, default: the importable d2l, skorch, ignite,
poutyne and accelerate). loopdoctor runs as its real command line (`loopdoctor check`) in a
subprocess with a private cache directory; bare parse runs in this process. TorchFix pins an
older libcst, so it lives in its own virtual environment and is run on the training corpus.
Targets: warm <= 0.1 x cold; all cores >= 1.7 x faster than 1 job on 2 cores; cold on
all cores >= 10 x faster than TorchFix on the same tree.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time

import libcst

TRAINING_PACKAGES = ("d2l", "skorch", "ignite", "poutyne", "accelerate")


def package_dir(name: str):
    spec = importlib.util.find_spec(name)
    return list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None


def python_files(roots):
    for root in roots:
        for directory, _, files in os.walk(root):
            for file in files:
                if file.endswith(".py"):
                    yield os.path.join(directory, file)


def bare_parse(files) -> float:
    start = time.perf_counter()
    for path in files:
        with open(path, "rb") as handle:
            data = handle.read()
        try:
            libcst.parse_module(data)
        except Exception:
            pass
    return time.perf_counter() - start


def timed(command) -> float:
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def loopdoctor(roots, cache, *options) -> list[str]:
    return [sys.executable, "-m", "loopdoctor", "check", "--exit-zero", "--output-format", "concise",
            "--cache-dir", cache, "--no-respect-gitignore", *options, *roots]


def measure(title, roots, torchfix=None) -> None:
    files = list(python_files(roots))
    lines = sum(1 for path in files for _ in open(path, "rb"))
    print(f"\n{title}: {len(files)} files, {lines:,} lines")
    cache = tempfile.mkdtemp(prefix="loopdoctor-bench-")
    try:
        bare = bare_parse(files)
        cold_one = timed(loopdoctor(roots, cache, "--no-cache", "--jobs", "1"))
        shutil.rmtree(cache, ignore_errors=True)
        cold_all = timed(loopdoctor(roots, cache))  # also fills the cache
        warm = timed(loopdoctor(roots, cache))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    rows = [("bare libcst.parse_module, 1 process", bare), ("loopdoctor cold, 1 job", cold_one),
            (f"loopdoctor cold, {os.cpu_count()} jobs", cold_all), ("loopdoctor warm (cache)", warm)]
    if torchfix:
        rows.append(("TorchFix", timed([torchfix, *roots])))
    for label, seconds in rows:
        print(f"  {label:38s} {seconds:8.2f} s  {lines / seconds:10,.0f} lines/s  {seconds / bare:6.2f} x bare parse")
    print(f"  warm / cold (all cores)       {warm / cold_all:.3f}   (target <= 0.1)")
    print(f"  1 job / all cores             {cold_one / cold_all:.2f}x  (target >= 1.7 on 2 cores)")
    if torchfix:
        print(f"  TorchFix / loopdoctor cold    {rows[-1][1] / cold_all:.1f}x  (target >= 10)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("training", nargs="*", help="training-code directories (default: importable packages)")
    parser.add_argument("--torchfix", help="the torchfix executable of its own virtual environment")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    training = args.training or [d for d in map(package_dir, TRAINING_PACKAGES) if d]
    measure("training-code corpus", training, args.torchfix)
    if not args.skip_torch:
        measure("torch package sources", [package_dir("torch")])


if __name__ == "__main__":
    main()
