"""``loopdoctor run``: a training script or module, unchanged, under a global watch."""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import traceback
from typing import Optional

from rich.console import Console

from loopdoctor.exit_codes import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, EXIT_INTERRUPTED
from loopdoctor.runtime import Diagnosis, GlobalWatch, NonFiniteError
from loopdoctor.runtime.distributed import origin_diagnosis

UNCAUGHT_EXCEPTION = 1  # what python itself exits with when the script raises


def run_target(args: argparse.Namespace) -> int:
    target = list(args.target)
    if target[:1] == ["--"]:
        target = target[1:]
    if args.module is None and not target:
        print("error: loopdoctor run needs a SCRIPT or -m MODULE", file=sys.stderr)
        return EXIT_ERROR
    try:
        watch = GlobalWatch(mode="warn" if args.warn else "raise", stages=args.stages, max_skipped_steps=args.max_skipped_steps)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    status = _run_under(watch, args.module, target)
    if watch.findings:
        diagnosis = origin_diagnosis(watch.findings[0])
        _report(diagnosis, args.json_out)
        if not args.warn:
            return EXIT_FINDINGS
    return status


def _run_under(watch: GlobalWatch, module: Optional[str], target: list[str]) -> int:
    """Run like ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` would; return the exit status."""
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    if module is not None:
        sys.argv = [module, *target]
        sys.path.insert(0, os.getcwd())
    else:
        sys.argv = target
        sys.path.insert(0, os.path.dirname(os.path.abspath(target[0])))
    try:
        with watch:
            if module is not None:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(target[0], run_name="__main__")
        return EXIT_CLEAN
    except NonFiniteError:
        return EXIT_FINDINGS
    except SystemExit as exit:
        return _exit_status(exit.code)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseException:
        traceback.print_exc()
        return UNCAUGHT_EXCEPTION
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _exit_status(code) -> int:
    if code is None:
        return EXIT_CLEAN
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return UNCAUGHT_EXCEPTION  # sys.exit("message"), as python reports it


def _report(diagnosis: Diagnosis, json_out: Optional[str]) -> None:
    Console(stderr=True).print(diagnosis)
    if json_out:  # through a temporary file: under torchrun every rank writes it
        temporary = f"{json_out}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(diagnosis.to_dict(), handle, indent=2)
        os.replace(temporary, json_out)
