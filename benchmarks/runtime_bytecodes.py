"""Python bytecodes executed per step of the reference ticket trainer, unwatched and under each
watch, counted with `sys.settrace`'s opcode events: a measure of the watch's fixed Python cost
that does not drift with the machine's speed (the wall-clock ratios of `runtime_overhead.py`
move by a tenth between runs on a shared machine), and that names the functions it goes to.

    python benchmarks/runtime_bytecodes.py [--steps N] [--top K]

Bytecodes are not time: PyTorch's own C++ work per step is not counted, so this ratio is larger
than the time ratio. Compare it between commits, and read the time ratio in `runtime_overhead.py`.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
import loopdoctor  # noqa: E402
from loopdoctor.runtime import GlobalWatch  # noqa: E402
from runtime_overhead import reference_workload  # noqa: E402


def count_bytecodes(steps: int, watch_for) -> tuple[int, collections.Counter]:
    """Bytecodes of `steps` reference-trainer steps (after as many under the same watch, to warm up),
    in total and per (file, function)."""
    model, optimizer, run, _ = reference_workload(steps)
    with watch_for(model, optimizer)():
        run()
    counts: collections.Counter = collections.Counter()

    def trace(frame, event, arg):
        frame.f_trace_opcodes, frame.f_trace_lines = True, False
        code = frame.f_code
        key = (code.co_filename.split("site-packages/")[-1], code.co_name)

        def opcode(frame, event, arg):
            if event == "opcode":
                counts[key] += 1
            return opcode

        return opcode

    with watch_for(model, optimizer)():
        sys.settrace(trace)
        try:
            run()
        finally:
            sys.settrace(None)
    return sum(counts.values()), counts


MODES = {  # each: (model, optimizer) -> the context to run in
    "unwatched": lambda model, optimizer: contextlib.nullcontext,
    "watched": lambda model, optimizer: lambda: loopdoctor.watch(model, optimizer),
    "run (global)": lambda model, optimizer: GlobalWatch,
    "loop checks only": lambda model, optimizer: lambda: GlobalWatch(ignore=["LD200"]),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--top", type=int, default=12, help="loopdoctor's costliest functions to list, per watch")
    args = parser.parse_args()
    base, _ = count_bytecodes(args.steps, MODES["unwatched"])
    print(f"reference ticket trainer, {args.steps} steps: Python bytecodes per step")
    print(f"  {'unwatched':18s} {base / args.steps:8.0f}")
    for mode, watch_for in list(MODES.items())[1:]:
        total, counts = count_bytecodes(args.steps, watch_for)
        print(f"  {mode:18s} {total / args.steps:8.0f}   {total / base:.2f}x")
        ours = [(n, key) for key, n in counts.items() if "loopdoctor/runtime/" in key[0]]
        for n, (filename, function) in sorted(ours, reverse=True)[: args.top]:
            print(f"      {n / args.steps:7.0f}  {filename.rpartition('loopdoctor/runtime/')[2]}:{function}")


if __name__ == "__main__":
    main()
