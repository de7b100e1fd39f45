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
    check.add_argument("--extend-select", type=_codes, default=[], metavar="CODES", help="codes or prefixes to enable on top of the selection")
    check.add_argument("--ignore", type=_codes, default=[], metavar="CODES", help="comma-separated codes or prefixes to disable")
    check.add_argument("--output-format", choices=("full", "concise", "json", "sarif", "github"), default="full")
    check.add_argument("--config", metavar="PYPROJECT", help="read [tool.loopdoctor] from this file instead of the nearest pyproject.toml")
    check.add_argument("--statistics", action="store_true", help="print the number of findings per code instead of the findings")
    check.add_argument("--exit-zero", action="store_true", help="exit 0 even when there are findings")
    check.add_argument("-q", "--quiet", action="store_true", help="print the findings and nothing else")
    check.add_argument("--no-respect-gitignore", dest="respect_gitignore", action="store_false", help="check files that .gitignore excludes")

    commands.add_parser("rules", help="list every rule: code, name and summary")
    rule = commands.add_parser("rule", help="show one rule's documentation")
    rule.add_argument("code", help="a rule code, e.g. LD001")

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
        if args.command in ("rules", "rule"):
            from loopdoctor import rule_docs

            return rule_docs.list_rules() if args.command == "rules" else rule_docs.show_rule(args.code)
        from loopdoctor import runtime_cli  # torch is imported from here on

        return runtime_cli.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_CLEAN


def run_check(args: argparse.Namespace) -> int:
    from loopdoctor.config import ConfigError
    from loopdoctor.static import CheckOptions, UnknownCodeError, check_paths
    from loopdoctor.static.output import render

    options = CheckOptions(args.select, args.ignore, args.extend_select, args.config, args.respect_gitignore)
    try:
        results, errors = check_paths(args.paths, options)
    except UnknownCodeError as error:
        print(f"error: unknown rule code or prefix: {error}", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    errors += [result.error for result in results if result.error]
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    render(results, args.output_format, quiet=args.quiet, statistics=args.statistics)
    if errors:
        return EXIT_ERROR
    has_findings = any(result.findings for result in results)
    return EXIT_FINDINGS if has_findings and not args.exit_zero else EXIT_CLEAN
