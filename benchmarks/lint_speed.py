"""How much does `loopdoctor check` cost compared with parsing the same files with libcst?

Both run in this one process over the same files, read into memory first, alternating and
keeping the best of --repeat rounds, so disk and machine noise hit both alike.

    python benchmarks/lint_speed.py [EXTRA_DIR ...]

The corpus is the installed torch package's Python sources, the training-loop packages that are
importable (d2l, skorch, ignite, poutyne, accelerate, transformers, lightning), any EXTRA_DIR,
and fixtures/. Targets: at most 2x bare parse on the files loopdoctor parses, and less
than bare parse over the whole corpus thanks to the token prefilter.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import libcst

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from loopdoctor.static import select_rules, suppression  # noqa: E402
from loopdoctor.static.checker import check_bytes  # noqa: E402
from loopdoctor.static.discover import discover  # noqa: E402

PACKAGES = ("torch", "d2l", "skorch", "ignite", "poutyne", "accelerate", "transformers", "lightning")


def package_dirs() -> list[str]:
    found = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found.append(list(spec.submodule_search_locations)[0])
    return found


def load(paths: list[str]) -> list[tuple[str, bytes]]:
    files = []
    for path, name, _ in discover(paths, respect_gitignore=False).files:
        with open(path, "rb") as handle:
            files.append((name, handle.read()))
    return files


def bare_parse(files) -> float:
    start = time.perf_counter()
    for _, data in files:
        try:
            libcst.parse_module(data)
        except Exception:
            pass
    return time.perf_counter() - start


def loopdoctor_check(files, rules) -> tuple[float, list[str]]:
    """What one file costs in `check` without the cache and the workers: the rules, then `# noqa`."""
    parsed = []
    codes = {rule.code for rule in rules} | {"LD000"}
    start = time.perf_counter()
    for name, data in files:
        if suppression.finish(check_bytes(data, name, rules), data, codes).parsed:
            parsed.append(name)
    return time.perf_counter() - start, parsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("extra", nargs="*")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    roots = package_dirs() + args.extra + [os.path.join(os.path.dirname(__file__), "..", "fixtures")]
    files = load(roots)
    lines = sum(data.count(b"\n") for _, data in files)
    rules = select_rules()
    print(f"corpus: {len(files)} files, {lines:,} lines from {len(roots)} roots")
    bare, ours, parsed = float("inf"), float("inf"), []
    for _ in range(args.repeat):
        bare = min(bare, bare_parse(files))
        elapsed, parsed = loopdoctor_check(files, rules)
        ours = min(ours, elapsed)
    parsed_set = set(parsed)
    subset = [f for f in files if f[0] in parsed_set]
    subset_bare, subset_ours = float("inf"), float("inf")
    for _ in range(args.repeat):
        subset_bare = min(subset_bare, bare_parse(subset))
        subset_ours = min(subset_ours, loopdoctor_check(subset, rules)[0])
    subset_lines = sum(data.count(b"\n") for _, data in subset)
    print(f"whole corpus   bare libcst parse {bare:7.2f} s  {lines / bare:9,.0f} lines/s")
    print(f"whole corpus   loopdoctor check  {ours:7.2f} s  {lines / ours:9,.0f} lines/s  ratio {ours / bare:.2f}x (target < 1)")
    print(f"parsed files   {len(subset)} of {len(files)} ({subset_lines:,} lines) pass the token prefilter")
    print(f"parsed files   bare libcst parse {subset_bare:7.2f} s")
    print(f"parsed files   loopdoctor check  {subset_ours:7.2f} s  ratio {subset_ours / subset_bare:.2f}x (target <= 2)")


if __name__ == "__main__":
    main()
