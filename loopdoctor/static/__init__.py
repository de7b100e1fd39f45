"""The static half: reads training code with libcst and never imports torch."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator, Optional, Sequence

from loopdoctor.config import Settings, SettingsFinder
from loopdoctor.static.cache import DEFAULT_DIRECTORY as DEFAULT_CACHE_DIRECTORY
from loopdoctor.static.cache import Cache
from loopdoctor.static import crossfile
from loopdoctor.static.discover import discover
from loopdoctor.static.findings import FileResult
from loopdoctor.static.rules import ALL_RULES, RULES_BY_CODE, RuleInfo


# Rules that ask whether a model's output ends in a softmax or sigmoid, possibly in another file.
CROSSFILE_CODES = frozenset({"LD001", "LD011", "LD012"})


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

    def rules_for(self, settings: Settings, path: str) -> list[RuleInfo]:
        select = self.select if self.select is not None else settings.select
        ignore = list(self.ignore) + settings.ignored_for(path)
        if self.select is None:
            ignore += settings.ignore
        return select_rules(select, ignore, settings.extend_select + list(self.extend_select))


def check_paths(paths: Sequence[str], options: Optional[CheckOptions] = None) -> tuple[list[FileResult], list[str]]:
    """Check files and directories, in a stable order whatever the number of jobs.

    Raises ConfigError or UnknownCodeError for bad settings.
    """
    options = options or CheckOptions()
    for codes in (options.select or [], options.ignore, options.extend_select):
        check_codes(codes)
    found = discover(list(paths), SettingsFinder(options.config), options.respect_gitignore)
    crossfile.forget()
    cache = Cache(options.cache_dir) if options.cache_dir else None
    results: list[Optional[FileResult]] = [None] * len(found.files)
    pending = []  # (index, data, name, codes, local modules it depends on, cache key)
    for index, (path, name, settings) in enumerate(found.files):
        codes = tuple(rule.code for rule in options.rules_for(settings, path))
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as error:
            results[index] = _unreadable(name, error)
            continue
        needs = crossfile.dependencies(path, data) if CROSSFILE_CODES & set(codes) else ()
        key = cache.key(data, name, codes, needs) if cache else None
        cached = cache.get(key, name) if cache else None
        if cached is not None:
            if cached.findings:
                from loopdoctor.static.source import attach_source_lines

                attach_source_lines(cached, data)
            results[index] = cached
        else:
            pending.append((index, data, name, codes, needs, key))
    for (index, *_, key), result in zip(pending, _run(pending, options.jobs)):
        results[index] = result
        if cache:
            cache.put(key, result)
    for (path, _, settings), result in zip(found.files, results):
        result.codes = tuple(rule.code for rule in options.rules_for(settings, path))
    return [result for result in results if result is not None], found.errors


def _run(pending: list, jobs: Optional[int]) -> Iterator[FileResult]:
    """Check the files that the cache did not answer, in worker processes when it pays."""
    tasks = [(data, name, codes, needs) for _, data, name, codes, needs, _ in pending]
    workers = min(jobs or os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        return map(_check_task, tasks)
    from concurrent.futures import ProcessPoolExecutor

    # Largest files first, so that no worker is left with a big file at the end; results are put
    # back in discovery order, so output never depends on scheduling.
    order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i][0]))
    results: list = [None] * len(tasks)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for index, result in zip(order, pool.map(_check_task, [tasks[i] for i in order], chunksize=1)):
            results[index] = result
    return iter(results)


def _check_task(task: tuple) -> FileResult:
    from loopdoctor.static.checker import check_bytes  # libcst is imported only when a file needs parsing

    data, name, codes, needs = task
    return check_bytes(data, name, [RULES_BY_CODE[code] for code in codes], crossfile.facts(needs))


def _unreadable(filename: str, error: OSError) -> FileResult:
    from loopdoctor.static.source import unreadable

    return unreadable(filename, error)


def check_source(data: bytes, filename: str, rules: Sequence) -> FileResult:
    from loopdoctor.static.checker import check_source as check

    return check(data, filename, rules)


__all__ = ["CheckOptions", "FileResult", "UnknownCodeError", "check_paths", "check_source", "select_rules"]
