"""The ``loopdoctor`` command.

``check`` is the static half and imports nothing heavy. ``demo`` and ``triage`` run the
reference ticket trainer and import torch only when called.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def _codes(value: str) -> list[str]:
    return [code for code in value.split(",") if code.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopdoctor", description="Find the mistakes in PyTorch training loops.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    check = commands.add_parser("check", help="check training code statically (never runs it)")
    check.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="files or directories (default: .)")
    check.add_argument("--select", type=_codes, metavar="CODES", help="comma-separated codes or prefixes to enable (ALL for every rule)")
    check.add_argument("--ignore", type=_codes, default=[], metavar="CODES", help="comma-separated codes or prefixes to disable")
    check.add_argument("--output-format", choices=("full", "concise", "json"), default="full")

    demo = commands.add_parser("demo", help="train the reference ticket router and print its receipt")
    demo.add_argument("--json", action="store_true", help="print the receipt as one JSON object")
    demo.add_argument("--plot", metavar="PNG", help="draw the loss curves to this file (needs matplotlib)")
    demo.add_argument("--checkpoint", metavar="PATH", help="where to save the checkpoint (default: a temporary file)")

    triage = commands.add_parser("triage", help="run the reference trainer under the watch, optionally with a fault")
    triage.add_argument("--inject", choices=("input", "activation", "loss", "gradient", "parameter"))
    triage.add_argument("--step", type=int, default=20, help="optimizer step (from 0) in which the fault is injected (default: 20)")
    triage.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return run_check(args)
        from loopdoctor import runtime_cli  # torch is imported from here on

        return runtime_cli.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN


def run_check(args: argparse.Namespace) -> int:
    from loopdoctor.static import UnknownCodeError, check_paths, select_rules
    from loopdoctor.static.output import render

    try:
        rules = select_rules(args.select, args.ignore)
    except UnknownCodeError as error:
        print(f"error: unknown rule code or prefix: {error}", file=sys.stderr)
        return EXIT_ERROR
    results, errors = check_paths(args.paths, rules)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    for result in results:
        if result.internal_error:
            print(f"error: {result.filename}: internal error, file skipped: {result.internal_error}", file=sys.stderr)
    render(results, args.output_format)
    if errors or any(result.internal_error for result in results):
        return EXIT_ERROR
    return EXIT_FINDINGS if any(result.findings for result in results) else EXIT_CLEAN
