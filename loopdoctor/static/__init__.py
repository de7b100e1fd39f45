"""The static half: reads training code with libcst and never imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from loopdoctor.config import Settings, SettingsFinder
from loopdoctor.static.checker import FileResult, check_file, check_source
from loopdoctor.static.discover import discover
from loopdoctor.static.rules import ALL_RULES, Rule


class UnknownCodeError(ValueError):
    pass


def select_rules(
    select: Optional[Iterable[str]] = None, ignore: Iterable[str] = (), extend_select: Iterable[str] = ()
) -> list[type[Rule]]:
    """Rules chosen by code or code prefix (``LD0``, ``ALL``), as ruff does."""
    chosen = [rule for rule in ALL_RULES if rule.enabled_by_default] if select is None else _matching(select)
    chosen += [rule for rule in _matching(extend_select) if rule not in chosen]
    ignored = {rule.code for rule in _matching(ignore)}
    return sorted((rule for rule in chosen if rule.code not in ignored), key=lambda rule: rule.code)


def check_codes(codes: Iterable[str]) -> None:
    """Raise UnknownCodeError for a code or prefix that matches no rule."""
    _matching(codes)


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


@dataclass
class CheckOptions:
    """What the command line says; each file's pyproject.toml settings complete it."""

    select: Optional[list[str]] = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    config: Optional[str] = None
    respect_gitignore: bool = True

    def rules_for(self, settings: Settings, path: str) -> list[type[Rule]]:
        select = self.select if self.select is not None else settings.select
        ignore = list(self.ignore) + settings.ignored_for(path)
        if self.select is None:
            ignore += settings.ignore
        return select_rules(select, ignore, settings.extend_select + list(self.extend_select))


def check_paths(paths: Sequence[str], options: Optional[CheckOptions] = None) -> tuple[list[FileResult], list[str]]:
    """Check files and directories; raises ConfigError or UnknownCodeError for bad settings."""
    options = options or CheckOptions()
    for codes in (options.select or [], options.ignore, options.extend_select):
        check_codes(codes)
    found = discover(list(paths), SettingsFinder(options.config), options.respect_gitignore)
    results = [check_file(path, name, options.rules_for(settings, path)) for path, name, settings in found.files]
    return results, found.errors


__all__ = ["CheckOptions", "FileResult", "UnknownCodeError", "check_file", "check_paths", "check_source", "select_rules"]
