"""``loopdoctor rules`` and ``loopdoctor rule CODE``: the rule pages, at the terminal."""

from __future__ import annotations

import sys
from importlib import resources

from rich.console import Console
from rich.markdown import Markdown

from loopdoctor.static.rules import ALL_RULES, RULES_BY_CODE


def page_text(code: str) -> str:
    return resources.files("loopdoctor").joinpath("rule_pages", f"{code}.md").read_text(encoding="utf-8")


def list_rules() -> int:
    """One line a rule, as plain text so that it greps and pipes well."""
    width = max(len(rule.name) for rule in ALL_RULES)
    for rule in ALL_RULES:
        default = "" if rule.enabled_by_default else " (off by default)"
        print(f"{rule.code}  {rule.name:<{width}}  {rule.summary}{default}")
    return 0


def show_rule(code: str) -> int:
    rule = RULES_BY_CODE.get(code.upper())
    if rule is None:
        print(f"error: unknown rule code: {code} (see `loopdoctor rules`)", file=sys.stderr)
        return 2
    Console().print(Markdown(page_text(rule.code)))
    return 0
