"""The ``loopdoctor`` command: its arguments, and which module runs each subcommand.

``check`` and ``server`` are the static half and import nothing heavy. ``demo``, ``triage`` and
``run`` import torch only when called.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from loopdoctor.exit_codes import EXIT_CLEAN, EXIT_ERROR, EXIT_INTERRUPTED


def _codes(value: str) -> list[str]:
    return [code for code in value.split(",") if code.strip()]


def _jobs(value: str) -> int:
    try:
        jobs = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of worker processes, got {value!r}") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"needs at least 1 worker process, got {jobs}")
    return jobs


def build_parser() -> argparse.ArgumentParser:
    from loopdoctor import __version__

    parser = argparse.ArgumentParser(prog="loopdoctor", description="Find the mistakes in PyTorch training loops.")
    parser.add_argument("--version", action="version", version=f"loopdoctor {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    check = commands.add_parser("check", help="check training code statically (never runs it)")
    check.add_argument("paths", nargs="*", default=["."], metavar="PATH", help="files or directories (default: .); - reads standard input")
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
    check.add_argument("-j", "--jobs", type=_jobs, metavar="N", help="worker processes, at least 1 (default: one per core)")
    check.add_argument("--no-cache", action="store_true", help="neither read nor write the result cache")
    check.add_argument("--cache-dir", metavar="DIR", help="where the result cache lives (default: .loopdoctor_cache, or $LOOPDOCTOR_CACHE_DIR)")
    check.add_argument("--stdin-filename", metavar="PATH", help="the path that standard input (`-`) stands for: its settings and per-file-ignores apply")
    check.add_argument("--force-exclude", action="store_true", help="apply exclude and extend-exclude to files named on the command line too")
    check.add_argument("--show-files", action="store_true", help="print the files that would be checked and exit")
    check.add_argument("--show-settings", action="store_true", help="print the settings that apply to each named path and exit")
    check.add_argument("--add-noqa", action="store_true", help="add a `# noqa: CODE` comment to every line with a finding")
    check.add_argument("--ignore-noqa", action="store_true", help="report findings even where a `# noqa` comment suppresses them")

    commands.add_parser("server", help="run the language server over stdio, for editors (needs the server extra)")

    clean = commands.add_parser("clean", help="remove the result cache")
    clean.add_argument("--cache-dir", metavar="DIR", help="the cache directory to remove")

    commands.add_parser("rules", help="list every rule: code, name and summary")
    rule = commands.add_parser("rule", help="show one rule's documentation")
    rule.add_argument("code", metavar="RULE", help="a rule code or name, e.g. LD001 or softmax-before-cross-entropy")

    demo = commands.add_parser("demo", help="train the reference ticket router and print its receipt")
    demo.add_argument("--json", action="store_true", help="print the receipt as one JSON object")
    demo.add_argument("--plot", metavar="PNG", help="draw the loss curves to this file (needs matplotlib)")
    demo.add_argument("--checkpoint", metavar="PATH", help="where to save the checkpoint (default: a temporary file)")

    triage = commands.add_parser("triage", help="run the reference trainer under the watch, optionally with a fault")
    triage.add_argument("--inject", choices=("input", "activation", "loss", "gradient", "parameter"))
    triage.add_argument("--step", type=int, default=20, help="optimizer step (from 0) in which the fault is injected (default: 20)")
    triage.add_argument("--json", action="store_true", help="print the diagnosis as JSON")

    run = commands.add_parser(
        "run", help="run a training script unchanged, reporting its loop mistakes and its first non-finite value",
        usage="loopdoctor run [options] (SCRIPT | -m MODULE) [ARGS ...]",
    )
    run.add_argument("--warn", action="store_true", help="keep running past a non-finite value, and keep the script's exit status")
    run.add_argument("--stages", type=_codes, metavar="STAGES", help="comma-separated stages to check (default: all): input,activation,logit,loss,gradient,parameter")
    run.add_argument("--json-out", metavar="FILE", help="also write the findings as JSON to this file")
    run.add_argument("--select", type=_codes, metavar="CODES", help="comma-separated codes or prefixes to check (default: all run-time codes)")
    run.add_argument("--ignore", type=_codes, default=[], metavar="CODES", help="comma-separated codes or prefixes not to check")
    run.add_argument("--max-skipped-steps", type=int, default=16, help="GradScaler skips in a row that count as a finding (default: 16)")
    run.add_argument("-m", dest="module", metavar="MODULE", help="run a module, as python -m does")
    run.add_argument("target", nargs=argparse.REMAINDER, help="the script and its arguments")
    return parser


def _split_run(argv: list[str]) -> list[str]:
    """``run [options] (SCRIPT | -m MODULE) ARGS``: everything after the target belongs to it."""
    with_value = {"--stages", "--json-out", "--max-skipped-steps", "--select", "--ignore"}
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


# The module of each subcommand, imported only when it runs: ``check`` and ``server`` never
# import torch; ``demo``, ``triage`` and ``run`` do.
COMMAND_MODULES = {
    "check": "check", "clean": "clean", "rules": "rules", "rule": "rules", "server": "server",
    "demo": "demo", "triage": "triage", "run": "run",
}
RUNTIME_EXTRA = {"torch", "numpy"}  # what `pip install 'loopdoctor[runtime]'` brings


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        argv = _split_run(argv)
    args = parser.parse_args(argv)
    try:
        command = importlib.import_module(f"loopdoctor.cli.{COMMAND_MODULES[args.command]}")
    except ModuleNotFoundError as error:
        if error.name not in RUNTIME_EXTRA:
            raise
        print(f"error: `loopdoctor {args.command}` needs {error.name}, which is not installed: "
              "pip install 'loopdoctor[runtime]'", file=sys.stderr)
        return EXIT_ERROR
    try:
        return command.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_CLEAN
