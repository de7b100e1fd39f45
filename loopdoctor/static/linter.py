"""The one entry point of the static half: lint paths, or bytes for a named path (stdin, an editor
buffer), and fix them. It owns discovery, settings, the cache, cross-file facts, workers,
notebooks, selection and ``# noqa``; front ends only parse their arguments, call it and print.

Each file is analysed with the rules selected for it (and those its cache entry already holds),
and the raw findings are cached by content; the selection (``--select``, per-file-ignores) and
``# noqa`` are applied afterwards, in this process, so a narrower selection is answered by the
cache and a wider one analyses again only for the rules it adds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

from loopdoctor.config import AnalysisSettings, Settings, SettingsFinder
from loopdoctor.static import crossfile, suppression, text_memo
from loopdoctor.static.cache import DEFAULT_DIRECTORY as DEFAULT_CACHE_DIRECTORY
from loopdoctor.static.cache import Cache
from loopdoctor.static.discover import Discovery, discover
from loopdoctor.static.findings import FileResult
from loopdoctor.static.rules import ALL_RULES, PARSE_ERROR_CODE, RuleInfo, check_codes, select_rules
from loopdoctor.static.suppression import UNUSED_NOQA_CODE

# LD000 comes from parsing and LD100 from the noqa comments: neither needs a rule to be analysed.
ANALYSED_CODES = frozenset(rule.code for rule in ALL_RULES) - {PARSE_ERROR_CODE, UNUSED_NOQA_CODE}  # the rest the engine reports


@dataclass
class CheckOptions:
    """What the command line says; each file's pyproject.toml settings complete it."""

    select: Optional[list[str]] = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    config: Optional[str] = None
    respect_gitignore: bool = True
    jobs: Optional[int] = None  # None: one worker per core
    cache_dir: Optional[str] = DEFAULT_CACHE_DIRECTORY  # None: no cache
    force_exclude: bool = False  # apply the excludes to files named explicitly too
    respect_noqa: bool = True

    def rules_for(self, settings: Settings, path: str) -> list[RuleInfo]:
        select = self.select if self.select is not None else settings.select
        ignore = list(self.ignore) + settings.ignored_for(path)
        if self.select is None:
            ignore += settings.ignore
        return select_rules(select, ignore, settings.extend_select + list(self.extend_select))

    def codes_for(self, settings: Settings, path: str) -> tuple[str, ...]:
        return tuple(rule.code for rule in self.rules_for(settings, path))

    def validate(self) -> None:
        """Raise UnknownCodeError for a code on the command line that matches no rule."""
        for codes in (self.select or [], self.ignore, self.extend_select):
            check_codes(codes)


@dataclass
class Report:
    results: list[FileResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # paths that could not be looked at
    warnings: list[str] = field(default_factory=list)  # skipped paths, files with nothing to check
    discovery: Optional[Discovery] = None


def discover_paths(paths: Sequence[str], options: CheckOptions) -> Discovery:
    """The files ``paths`` name, with their settings. Raises ConfigError for bad settings."""
    options.validate()
    return discover(list(paths), SettingsFinder(options.config), options.respect_gitignore, options.force_exclude)


def lint_paths(paths: Sequence[str], options: Optional[CheckOptions] = None) -> Report:
    """Check files and directories, in a stable order whatever the number of jobs.

    Raises ConfigError or UnknownCodeError for bad settings.
    """
    options = options or CheckOptions()
    found = discover_paths(paths, options)
    report = Report(errors=list(found.errors), warnings=list(found.warnings), discovery=found)
    crossfile.forget()
    cache = Cache(options.cache_dir) if options.cache_dir else None
    if cache:
        text_memo.load(cache)
    results: list[Optional[FileResult]] = [None] * len(found.files)
    pending = []  # (index, task, cache key)
    for index, (path, name, settings) in enumerate(found.files):
        codes = options.codes_for(settings, path)
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            results[index] = suppression.finish(_unreadable(name, error), b"", codes, options.respect_noqa)
            continue
        needed = _analysed(codes)
        needs = crossfile.dependencies(path, data)
        key = cache.key(data, name, needs, settings.analysis) if cache else None
        cached, analysed = cache.get(key, path, name, needed) if cache else (None, frozenset())
        if cached is not None:
            results[index] = suppression.finish(cached, data, codes, options.respect_noqa)
        else:
            pending.append((index, (data, name, tuple(sorted(analysed | needed)), needs, settings.analysis), key))
    for (index, task, key), result in zip(pending, _run([task for _, task, _ in pending], options.jobs)):
        path, _, settings = found.files[index]
        if cache:
            cache.put(key, path, result, task[2])
        results[index] = suppression.finish(result, task[0], options.codes_for(settings, path), options.respect_noqa)
    if cache:
        cache.save()
        text_memo.save()
    report.results = [result for result in results if result is not None]
    if not found.files and not found.errors:
        report.warnings.append("no Python files found")
    return report


def lint_bytes(data: bytes, path: str, options: Optional[CheckOptions] = None) -> FileResult:
    """Check ``data`` as if it were the file at ``path`` (which need not exist): its settings,
    per-file-ignores and local imports apply. For stdin and editor buffers; no cache."""
    options = options or CheckOptions()
    options.validate()
    settings = settings_for(path, options)
    crossfile.forget()
    codes = options.codes_for(settings, path)
    result = _check_task((data, path, tuple(sorted(_analysed(codes))), crossfile.dependencies(path, data), settings.analysis))
    return suppression.finish(result, data, codes, options.respect_noqa)


def fix_paths(paths: Sequence[str], options: CheckOptions, unsafe: bool, write: bool = True) -> tuple[list, list[str]]:
    """Fix every checked file that has applicable fixes (and write it, unless ``write`` is
    False, as for ``--diff``): the outcomes and the errors."""
    from loopdoctor.static.fixing import ChangedOnDisk, applicable, fix_source, write_atomically

    report = lint_paths(paths, options)
    outcomes, errors = [], list(report.errors)
    for (path, name, settings), result in zip(report.discovery.files, report.results):
        if not any(applicable(finding, unsafe) for finding in result.findings):
            continue
        data = _read(path)
        if data is None:
            continue
        outcome = fix_source(data, name, path, result.codes, unsafe, settings.analysis, options.respect_noqa)
        errors += outcome.dropped
        if outcome.fixed is None:
            continue
        if write:
            try:
                write_atomically(outcome)
            except (ChangedOnDisk, OSError) as error:
                errors.append(str(error))
                continue
        outcomes.append(outcome)
    return outcomes, errors


def fix_bytes(data: bytes, path: str, options: CheckOptions, unsafe: bool):
    """``data`` fixed as if it were the file at ``path`` (stdin, editor buffers)."""
    from loopdoctor.static.fixing import fix_source

    options.validate()
    settings = settings_for(path, options)
    return fix_source(data, path, path, options.codes_for(settings, path), unsafe, settings.analysis, options.respect_noqa)


def add_noqa(paths: Sequence[str], options: CheckOptions) -> tuple[int, list[str]]:
    """Give every current finding a ``# noqa`` comment: the number added and the errors."""
    from loopdoctor.static.fixing import ChangedOnDisk, FixOutcome, edited, write_atomically
    from loopdoctor.static.source import source_lines

    report = lint_paths(paths, options)
    added, errors = 0, list(report.errors)
    for (path, name, _), result in zip(report.discovery.files, report.results):
        findings = [f for f in result.findings if f.code not in (PARSE_ERROR_CODE, UNUSED_NOQA_CODE)]
        data = _read(path) if findings else None
        if data is None:
            continue
        edits = suppression.noqa_edits(findings, source_lines(name, data))
        fixed = edited(data, name, edits) if edits else None
        if fixed is None or fixed == data:
            continue
        try:
            write_atomically(FixOutcome(path, name, data, fixed, len(edits)))
            added += len(edits)
        except (ChangedOnDisk, OSError) as error:
            errors.append(str(error))
    return added, errors


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def settings_for(path: str, options: CheckOptions) -> Settings:
    return SettingsFinder(options.config).for_path(path)


def _analysed(codes) -> frozenset[str]:
    """The rules whose analysis the selection ``codes`` needs."""
    return ANALYSED_CODES & set(codes)


def _run(tasks: list, jobs: Optional[int]) -> Iterator[FileResult]:
    """Check the files that the cache did not answer, in worker processes when it pays."""
    workers = min(jobs or os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        return map(_check_task, tasks)
    from loopdoctor.static.workers import run_in_pool

    return iter(run_in_pool(_check_task, tasks, workers, _crashed))


def _check_task(task: tuple) -> FileResult:
    from loopdoctor.static.checker import check_bytes  # libcst is imported only when a file needs parsing

    data, name, codes, needs, analysis = task
    rules = [rule.load() for rule in ALL_RULES if rule.code in codes]
    return check_bytes(data, name, rules, crossfile.facts(needs), analysis)


def _crashed(task: tuple, why: str) -> FileResult:
    return FileResult(task[1], error=f"internal error, file skipped: the checker {why} on this file")


def _unreadable(filename: str, error: OSError) -> FileResult:
    from loopdoctor.static.source import unreadable

    return unreadable(filename, error)


__all__ = [
    "AnalysisSettings", "CheckOptions", "Report", "add_noqa", "discover_paths", "fix_bytes", "fix_paths",
    "lint_bytes", "lint_paths", "settings_for",
]
