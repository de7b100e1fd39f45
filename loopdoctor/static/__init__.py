"""The static half: reads training code with libcst and never imports torch."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from loopdoctor.static.checker import FileResult, check_file, check_source
from loopdoctor.static.discover import discover
from loopdoctor.static.rules import ALL_RULES, RULES_BY_CODE, Rule


class UnknownCodeError(ValueError):
    pass


def select_rules(select: Optional[Iterable[str]] = None, ignore: Iterable[str] = ()) -> list[type[Rule]]:
    """Rules chosen by code or code prefix (``LD0``, ``ALL``), as ruff does."""
    chosen = [rule for rule in ALL_RULES if rule.enabled_by_default] if select is None else _matching(select)
    ignored = {rule.code for rule in _matching(ignore)}
    return [rule for rule in chosen if rule.code not in ignored]


def _matching(codes: Iterable[str]) -> list[type[Rule]]:
    matched: list[type[Rule]] = []
    for code in codes:
        code = code.strip().upper()
        if not code:
            continue
        hits = [rule for rule in ALL_RULES if code == "ALL" or rule.code.startswith(code)]
        if not hits:
            raise UnknownCodeError(code)
        matched.extend(rule for rule in hits if rule not in matched)
    return sorted(matched, key=lambda rule: rule.code)


def check_paths(paths: Sequence[str], rules: Sequence[type[Rule]]) -> tuple[list[FileResult], list[str]]:
    found = discover(list(paths))
    results = [check_file(path, name, rules) for path, name in found.files]
    return results, found.errors


__all__ = ["FileResult", "UnknownCodeError", "check_file", "check_paths", "check_source", "select_rules"]
