"""``loopdoctor check``: turn the arguments into a call of the linter (static/linter.py) and print
what it answers. Nothing here looks at a file itself."""

from __future__ import annotations

import argparse
import difflib
import sys

from loopdoctor.config import ConfigError
from loopdoctor.exit_codes import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS
from loopdoctor.static import linter
from loopdoctor.static.cache import directory_for
from loopdoctor.static.findings import FileResult
from loopdoctor.static.output import render
from loopdoctor.static.rules import UnknownCodeError

STDIN = "-"


def run(args: argparse.Namespace) -> int:
    options = linter.CheckOptions(
        args.select, args.ignore, args.extend_select, args.config, args.respect_gitignore, args.jobs,
        None if args.no_cache else directory_for(args.cache_dir), args.force_exclude, not args.ignore_noqa,
    )
    try:
        if STDIN in args.paths:
            return _run_stdin(args, options)
        if args.show_files:
            return _show_files(args.paths, options)
        if args.show_settings:
            return _show_settings(args.paths, options)
        if args.add_noqa:
            return _add_noqa(args.paths, options)
        return _run_paths(args, options)
    except UnknownCodeError as error:
        print(f"error: unknown rule code or prefix: {error}", file=sys.stderr)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_ERROR


def _run_paths(args: argparse.Namespace, options: linter.CheckOptions) -> int:
    fixed, errors = 0, []
    if args.fix or args.diff:
        outcomes, errors = linter.fix_paths(args.paths, options, args.unsafe_fixes, write=not args.diff)
        fixed = sum(outcome.applied for outcome in outcomes)
        if args.diff:
            for outcome in outcomes:
                _print_diff(outcome)
            print(f"Would fix {fixed} problem{'s' if fixed != 1 else ''}.", file=sys.stderr)
            for error in errors:
                print(f"error: {error}", file=sys.stderr)
            return EXIT_ERROR if errors else EXIT_FINDINGS if fixed else EXIT_CLEAN
    report = linter.lint_paths(args.paths, options)  # what remains, from the files as now written
    return _report(args, report.results, _unique(errors + report.errors), report.warnings, fixed)


def _report(args, results: list[FileResult], errors: list[str], warnings: list[str], fixed: int = 0) -> int:
    errors = errors + [f"{result.filename}: {result.error}" for result in results if result.error]
    warnings = warnings + [f"{result.filename}: {result.notice}" for result in results if result.notice]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    has_findings = any(result.findings for result in results)
    # "All checks passed!" only when something was checked and nothing went wrong.
    nothing_checked = not results and bool(warnings)
    quiet = args.quiet or (not has_findings and not fixed and (bool(errors) or nothing_checked))
    render(results, args.output_format, quiet=quiet, statistics=args.statistics,
           fixed=fixed, unsafe_fixes=args.unsafe_fixes)
    if errors:
        return EXIT_ERROR
    return EXIT_FINDINGS if has_findings and not args.exit_zero else EXIT_CLEAN


def _run_stdin(args: argparse.Namespace, options: linter.CheckOptions) -> int:
    if args.paths != [STDIN]:
        print("error: `-` (standard input) cannot be combined with other paths", file=sys.stderr)
        return EXIT_ERROR
    data = sys.stdin.buffer.read()
    name = args.stdin_filename or STDIN
    if args.fix or args.diff:
        outcome = linter.fix_bytes(data, name, options, args.unsafe_fixes)
        fixed_data = outcome.fixed if outcome.fixed is not None else data
        if args.diff:
            _print_diff(outcome)
            return EXIT_FINDINGS if outcome.applied else EXIT_CLEAN
        sys.stdout.buffer.write(fixed_data)
        sys.stdout.flush()
        result = linter.lint_bytes(fixed_data, name, options)
        for error in outcome.dropped:
            print(f"error: {error}", file=sys.stderr)
        if result.findings and not args.quiet:  # the source owns stdout: what remains goes to stderr
            render([result], "concise", sys.stderr, quiet=True)
        return EXIT_FINDINGS if result.findings and not args.exit_zero else EXIT_CLEAN
    return _report(args, [linter.lint_bytes(data, name, options)], [], [])


def _show_files(paths: list[str], options: linter.CheckOptions) -> int:
    found = linter.discover_paths(paths, options)
    for path, _, _ in found.files:
        print(path)
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in found.errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_ERROR if found.errors else EXIT_CLEAN


def _show_settings(paths: list[str], options: linter.CheckOptions) -> int:
    options.validate()
    for path in paths:
        settings = linter.settings_for(path, options)
        torch = settings.analysis.torch_version
        print(f"Settings for {path}")
        print(f"  configuration: {settings.source or 'none (defaults)'}")
        print(f"  rules: {', '.join(options.codes_for(settings, path)) or 'none'}")
        print(f"  per-file-ignores here: {', '.join(settings.ignored_for(path)) or 'none'}")
        print(f"  torch-version: {'.'.join(map(str, torch)) + ' (' + settings.torch_version_from + ')' if torch else 'not set'}")
        print(f"  exclude: {', '.join(settings.exclude)}")
        print(f"  extend-exclude: {', '.join(settings.extend_exclude) or 'none'}")
        print(f"  respect .gitignore: {'yes' if options.respect_gitignore else 'no'}; force-exclude: {'yes' if options.force_exclude else 'no'}")
        print(f"  honour # noqa: {'yes' if options.respect_noqa else 'no'}")
    return EXIT_CLEAN


def _add_noqa(paths: list[str], options: linter.CheckOptions) -> int:
    added, errors = linter.add_noqa(paths, options)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    print(f"Added {added} noqa directive{'s' if added != 1 else ''}.")
    return EXIT_ERROR if errors else EXIT_CLEAN


def _print_diff(outcome) -> None:
    """A unified diff of the fixed file; a notebook's, cell by cell."""
    if outcome.fixed is None:
        return
    for label, before, after in _diff_parts(outcome.filename, outcome.original, outcome.fixed):
        sys.stdout.writelines(difflib.unified_diff(before, after, f"a/{label}", f"b/{label}"))


def _diff_parts(filename: str, original: bytes, fixed: bytes):
    from loopdoctor.static.notebook import read_notebook
    from loopdoctor.static.source import source_encoding

    if filename.endswith(".ipynb"):
        old, new = read_notebook(original).cell_texts, read_notebook(fixed).cell_texts
        for cell in sorted(old):
            if old[cell] != new.get(cell):
                yield f"{filename}:cell {cell}", _lines(old[cell]), _lines(new.get(cell, ""))
        return
    encoding = source_encoding(original)
    yield filename, _lines(original.decode(encoding)), _lines(fixed.decode(encoding))


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    return lines


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))

