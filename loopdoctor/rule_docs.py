"""``loopdoctor rules`` and ``loopdoctor rule CODE``: the rule pages, at the terminal."""

from __future__ import annotations

import sys
from importlib import resources

from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from loopdoctor.static.rules import ALL_RULES, RULES_BY_CODE


def page_text(code: str) -> str:
    return resources.files("loopdoctor").joinpath("rule_pages", f"{code}.md").read_text(encoding="utf-8")


def list_rules() -> int:
    table = Table(show_header=True, header_style="bold")
    table.add_column("code")
    table.add_column("name")
    table.add_column("default")
    table.add_column("summary")
    for rule in ALL_RULES:
        table.add_row(rule.code, rule.name, "on" if rule.enabled_by_default else "off", rule.summary)
    Console(soft_wrap=False).print(table)
    return 0


def show_rule(code: str) -> int:
    rule = RULES_BY_CODE.get(code.upper())
    if rule is None:
        print(f"error: unknown rule code: {code} (see `loopdoctor rules`)", file=sys.stderr)
        return 2
    Console().print(Markdown(page_text(rule.code)))
    return 0
