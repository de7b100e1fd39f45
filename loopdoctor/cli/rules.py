"""``loopdoctor rules`` and ``loopdoctor rule CODE``: the rule pages, at the terminal."""

from __future__ import annotations

import sys
from importlib import resources

from rich.console import Console
from rich.markdown import Markdown

from loopdoctor.exit_codes import EXIT_CLEAN, EXIT_ERROR
from loopdoctor.static.rules import ALL_RULES
from loopdoctor.static.rules.catalog import run_time_only


def page_text(code: str) -> str:
    return resources.files("loopdoctor").joinpath("rule_pages", f"{code}.md").read_text(encoding="utf-8")


def run(args) -> int:
    return list_rules() if args.command == "rules" else show_rule(args.code)


def list_rules() -> int:
    """One line a rule, as plain text so that it greps and pipes well; then the codes only
    ``loopdoctor run`` reports."""
    run_time = run_time_only()
    width = max(len(rule.name) for rule in (*ALL_RULES, *run_time))
    for rule in ALL_RULES:
        default = "" if rule.enabled_by_default else " (off by default)"
        print(f"{rule.code}  {rule.name:<{width}}  {rule.summary}{default}")
    for rule in run_time:
        print(f"{rule.code}  {rule.name:<{width}}  {rule.summary} (run time only)")
    return EXIT_CLEAN


def find_rule(code_or_name: str):
    """A rule by its code (``LD001``, any case) or its name (``softmax-before-cross-entropy``)."""
    wanted = code_or_name.strip()
    every = (*ALL_RULES, *run_time_only())
    return next((rule for rule in every if rule.code == wanted.upper() or rule.name == wanted.lower()), None)


def show_rule(code_or_name: str) -> int:
    """The rule's page: rendered at a terminal, its Markdown as written when piped (as ``ruff
    rule`` does), so that a file or pager gets no padding and no escape codes."""
    rule = find_rule(code_or_name)
    if rule is None:
        print(f"error: unknown rule code or name: {code_or_name} (see `loopdoctor rules`)", file=sys.stderr)
        return EXIT_ERROR
    text = page_text(rule.code)
    if sys.stdout.isatty():
        Console().print(Markdown(text))
    else:
        sys.stdout.write(text)
    return EXIT_CLEAN

