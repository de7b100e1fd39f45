"""The rule registry and rule selection. Importing it is cheap: implementations load on first use."""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable, Optional

from loopdoctor.static.rules.catalog import BY_CODE, CATALOG, PARSE_ERROR_CODE, PARSE_ERROR_NAME, RuleInfo

ALL_RULES = CATALOG
RULES_BY_CODE = BY_CODE
REPOSITORY = "https://github.com/loopdoctor/loopdoctor"


def page_url(code: str) -> str:
    """Where a rule's page is published: its file in the project's repository."""
    return f"{REPOSITORY}/blob/main/rules/{code}.md"


class UnknownCodeError(ValueError):
    pass


def select_rules(
    select: Optional[Iterable[str]] = None, ignore: Iterable[str] = (), extend_select: Iterable[str] = ()
) -> list[RuleInfo]:
    """Rules chosen by code or code prefix (``LD0``, ``ALL``), as ruff does."""
    return list(_select(None if select is None else tuple(select), tuple(ignore), tuple(extend_select)))


@lru_cache(maxsize=64)  # asked once per file, with the same few selections
def _select(select: Optional[tuple], ignore: tuple, extend_select: tuple) -> tuple[RuleInfo, ...]:
    chosen = [rule for rule in ALL_RULES if rule.enabled_by_default] if select is None else _matching(select)
    chosen += [rule for rule in _matching(extend_select) if rule not in chosen]
    ignored = {rule.code for rule in _matching(ignore)}
    return tuple(sorted((rule for rule in chosen if rule.code not in ignored), key=lambda rule: rule.code))


def check_codes(codes: Iterable[str]) -> None:
    """Raise UnknownCodeError for a code or prefix that matches no rule."""
    _matching(codes)


def _matching(codes: Iterable[str]) -> list[RuleInfo]:
    matched: list[RuleInfo] = []
    for code in codes:
        code = code.strip().upper()
        if not code:
            continue
        hits = [rule for rule in ALL_RULES if code == "ALL" or rule.code.startswith(code)]
        if not hits:
            raise UnknownCodeError(code)
        matched.extend(rule for rule in hits if rule not in matched)
    return sorted(matched, key=lambda rule: rule.code)


__all__ = [
    "ALL_RULES", "RULES_BY_CODE", "PARSE_ERROR_CODE", "PARSE_ERROR_NAME", "RuleInfo", "UnknownCodeError",
    "check_codes", "page_url", "select_rules",
]
