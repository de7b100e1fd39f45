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
    check.add_argument("--fix", action="store_true", help="apply the safe fixes (and the unsafe ones with --unsafe-fixes)")
    check.add_argument("--unsafe-fixes", action="store_true", help="also apply fixes that may change behaviour the code relied on")
    check.add_argument("--diff", action="store_true", help="print the diff that --fix would write, change nothing")
    check.add_argument("-j", "--jobs", type=int, metavar="N", help="worker processes (default: one per core)")
    check.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    check.add_argument("--cache-dir", metavar="DIR", help="where the result cache lives (default: .loopdoctor_cache, or $LOOPDOCTOR_CACHE_DIR)")

    clean = commands.add_parser("clean", help="remove the result cache")
    clean.add_argument("--cache-dir", metavar="DIR", help="the cache directory to remove")

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

    run = commands.add_parser(
        "run", help="run a training script unchanged, stopping at the first non-finite value",
        usage="loopdoctor run [options] (SCRIPT | -m MODULE) [ARGS ...]",
    )
    run.add_argument("--warn", action="store_true", help="report and keep running instead of stopping")
    run.add_argument("--stages", type=_codes, metavar="STAGES", help="comma-separated stages to check (default: all): input,activation,logit,loss,gradient,parameter")
    run.add_argument("--json-out", metavar="FILE", help="also write the diagnosis as JSON to this file")
    run.add_argument("--max-skipped-steps", type=int, default=16, help="GradScaler skips in a row that count as a finding (default: 16)")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m does")
    run.add_argument("target", nargs=argparse.REMAINDER, help="the script and its arguments")
    return parser


def _split_run(argv: list[str]) -> list[str]:
    """``run [options] (SCRIPT | -m MODULE) ARGS``: everything after the target belongs to it."""
    with_value = {"--stages", "--json-out", "--max-skipped-steps"}
    index = 1
    while index < len(argv):
        token = argv[index]
        if token == "-m":
            return argv[: index + 2] + ["--", *argv[index + 2:]]
        if token in with_value:
            index += 2
        elif token.startswith("-") and token != "--":
            index += 1
        else:
            break
    rest = argv[index:]
    return argv[:index] + ["--", *(rest[1:] if rest[:1] == ["--"] else rest)]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        argv = _split_run(argv)
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return run_check(args)
        if args.command == "clean":
            return run_clean(args)
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


def _cache_dir(args: argparse.Namespace) -> str:
    import os

    from loopdoctor.static.cache import DEFAULT_DIRECTORY

    return args.cache_dir or os.environ.get("LOOPDOCTOR_CACHE_DIR") or DEFAULT_DIRECTORY


def run_clean(args: argparse.Namespace) -> int:
    from loopdoctor.static.cache import clean

    directory = _cache_dir(args)
    print(f"removed {directory}" if clean(directory) else f"no cache at {directory}")
    return EXIT_CLEAN


def apply_fixes(results, args: argparse.Namespace) -> tuple[int, list[str]]:
    """Fix (or, with --diff, show the fixes for) every file with applicable fixes."""
    import difflib

    from loopdoctor.static.fixing import ChangedOnDisk, applicable, fix_file, write_atomically
    from loopdoctor.static.rules import RULES_BY_CODE

    fixed, errors = 0, []
    for result in results:
        if not any(applicable(f, args.unsafe_fixes) for f in result.findings) or result.filename.endswith(".ipynb"):
            continue
        outcome = fix_file(result.filename, result.filename, [RULES_BY_CODE[c] for c in result.codes], args.unsafe_fixes)
        errors += outcome.dropped
        if outcome.fixed is None:
            continue
        if args.diff:
            encoding = _encoding_of(outcome.original)
            before = outcome.original.decode(encoding).splitlines(keepends=True)
            after = outcome.fixed.decode(encoding).splitlines(keepends=True)
            sys.stdout.writelines(difflib.unified_diff(before, after, f"a/{result.filename}", f"b/{result.filename}"))
            fixed += outcome.applied
            continue
        try:
            write_atomically(outcome)
            fixed += outcome.applied
        except (ChangedOnDisk, OSError) as error:
            errors.append(str(error))
    if args.diff:
        print(f"Would fix {fixed} problem{'s' if fixed != 1 else ''}.", file=sys.stderr)
    return fixed, errors


def _encoding_of(data: bytes) -> str:
    from loopdoctor.static.source import source_encoding

    return source_encoding(data)


def run_check(args: argparse.Namespace) -> int:
    from loopdoctor.config import ConfigError
    from loopdoctor.static import CheckOptions, UnknownCodeError, check_paths
    from loopdoctor.static.output import render

    cache_dir = None if args.no_cache else _cache_dir(args)
    options = CheckOptions(args.select, args.ignore, args.extend_select, args.config, args.respect_gitignore, args.jobs, cache_dir)
    try:
        results, errors = check_paths(args.paths, options)
    except UnknownCodeError as error:
        print(f"error: unknown rule code or prefix: {error}", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    fixed = 0
    if args.fix or args.diff:
        fixed, fix_errors = apply_fixes(results, args)
        if args.diff:
            return EXIT_FINDINGS if fixed else EXIT_CLEAN
        errors += fix_errors
        results, errors2 = check_paths(args.paths, options)  # what remains, from the files as now written
    errors += [f"{result.filename}: {result.error}" for result in results if result.error]
    for result in results:
        if result.notice:
            print(f"warning: {result.filename}: {result.notice}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    render(results, args.output_format, quiet=args.quiet, statistics=args.statistics, fixed=fixed,
           unsafe_fixes_shown=args.unsafe_fixes)
    if errors:
        return EXIT_ERROR
    has_findings = any(result.findings for result in results)
    return EXIT_FINDINGS if has_findings and not args.exit_zero else EXIT_CLEAN
