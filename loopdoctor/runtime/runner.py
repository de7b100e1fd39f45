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
from loopdoctor.runtime.checks import UnknownCodeError
from loopdoctor.runtime.distributed import origin_diagnosis
from loopdoctor.runtime.findings import Site, finding_dict, finding_text

UNCAUGHT_EXCEPTION = 1  # what python itself exits with when the script raises
RUNPY_FILES = (runpy.__file__, "<frozen runpy>")  # 3.11 reports runpy's frames as frozen
PACKAGE_DIRECTORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # loopdoctor/


def run_target(args: argparse.Namespace) -> int:
    target = list(args.target)
    if target[:1] == ["--"]:
        target = target[1:]
    problem = _usage_problem(args, target)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_ERROR
    try:
        # The findings are printed below, once, so the watch itself neither warns nor (--warn) raises.
        watch = GlobalWatch(
            mode="record" if args.warn else "raise", stages=args.stages, max_skipped_steps=args.max_skipped_steps,
            select=args.select, ignore=args.ignore, loop_warnings=False,
        )
    except UnknownCodeError as error:
        print(f"error: unknown code {error}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    status = _run_under(watch, args.module, target)
    findings = [origin_diagnosis(f) if isinstance(f, Diagnosis) else f for f in watch.findings]
    _report(findings, args.json_out)
    if findings and not args.warn:
        return EXIT_FINDINGS
    return status


def _usage_problem(args: argparse.Namespace, target: list[str]) -> Optional[str]:
    """What is wrong with the command line, found before anything runs."""
    if args.module is None and not target:
        return "loopdoctor run needs a SCRIPT or -m MODULE"
    if args.module is None and not os.path.isfile(target[0]):
        return f"cannot open the script {target[0]}: no such file"
    if args.json_out:
        directory = os.path.dirname(os.path.abspath(args.json_out))
        if not os.path.isdir(directory):
            return f"--json-out {args.json_out}: the directory {directory} does not exist"
    return None


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
    except BaseException as error:
        if isinstance(error, ImportError) and _raised_by_runpy(error):
            print(f"error: {error}", file=sys.stderr)  # -m named a module that does not exist
            return EXIT_ERROR
        _print_script_traceback(error)
        return UNCAUGHT_EXCEPTION
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def _raised_by_runpy(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and frames[-1].filename in RUNPY_FILES


def _print_script_traceback(error: BaseException) -> None:
    """The traceback as ``python SCRIPT`` prints it: from the script's first frame, without
    loopdoctor's and runpy's frames above it."""
    tb = error.__traceback__
    while tb is not None and _is_runner_frame(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)


def _is_runner_frame(filename: str) -> bool:
    return filename in RUNPY_FILES or os.path.dirname(os.path.abspath(filename)).startswith(PACKAGE_DIRECTORY)


def _exit_status(code) -> int:
    if code is None:
        return EXIT_CLEAN
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return UNCAUGHT_EXCEPTION  # sys.exit("message"), as python reports it


def _report(findings: list, json_out: Optional[str]) -> None:
    """Each finding (on stderr: stdout is the script's), a count, and the JSON file if asked for."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    for finding in findings:
        console.print(_diagnosis_text(finding) if isinstance(finding, Diagnosis) else finding)
    if findings:
        console.print(f"loopdoctor: {len(findings)} finding(s)", style="bold")
    if json_out:  # through a temporary file: under torchrun every rank writes it
        temporary = f"{json_out}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump({"findings": [finding_dict(f) for f in findings]}, handle, indent=2)
        os.replace(temporary, json_out)


def _diagnosis_text(diagnosis: Diagnosis):
    """LD200 in the shape of the other findings: where it was found, code, name and headline,
    then the diagnosis's lines indented."""
    first, *rest = diagnosis.lines()
    place = str(Site(diagnosis.filename, diagnosis.line)) if diagnosis.filename else "<unknown>"
    text = finding_text(place, diagnosis.code, diagnosis.name, first)
    for line in rest:
        text.append(f"\n    {line}", style="yellow" if line.startswith("likely cause") else "")
    return text
