"""The loop checks: one module per code, each a `Check` subclass that subscribes to the events
it needs by defining ``on_<event>`` methods (the events are listed in ``recorder.EVENTS``).

A check whose code has a static rule takes that rule's name and fix hint from the static
catalog, so both halves speak of one mistake in the same words; the run-time-only codes
(LD200-LD203) declare their own.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import TYPE_CHECKING, Any, Iterable, Optional

from loopdoctor.static.rules import RULES_BY_CODE

if TYPE_CHECKING:
    from loopdoctor.runtime.recorder import Recorder

CHECK_MODULE = re.compile(r"^(ld\d{3}_\w+)\.py$")
NONFINITE_CODE = "LD200"  # the first non-finite value: found by the watch's own pipeline


class UnknownCodeError(ValueError):
    pass


class Check:
    code: str = ""
    name: str = ""  # from the static rule of the same code, when there is one
    summary: str = ""
    fix_hint: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        rule = RULES_BY_CODE.get(cls.code)
        if rule is not None:
            for field in ("name", "summary", "fix_hint"):
                setattr(cls, field, vars(cls).get(field) or getattr(rule, field))

    def __init__(self, recorder: "Recorder"):
        self.recorder = recorder
        self.state = recorder.state

    def report(self, message: str, site: Any, **options: Any) -> Optional[Any]:
        return self.recorder.report(self, message, site, **options)


def _load_checks() -> list[type[Check]]:
    directory = os.path.dirname(os.path.abspath(__file__))
    checks = []
    for filename in sorted(os.listdir(directory)):
        match = CHECK_MODULE.match(filename)
        if match:
            module = importlib.import_module(f"{__name__}.{match.group(1)}")
            checks += [value for value in vars(module).values()
                       if isinstance(value, type) and issubclass(value, Check) and value.__module__ == module.__name__]
    return checks


CHECKS: list[type[Check]] = _load_checks()
BY_CODE = {check.code: check for check in CHECKS}
RUNTIME_CODES = tuple(sorted(BY_CODE))


def select_codes(select: Optional[Iterable[str]] = None, ignore: Iterable[str] = ()) -> frozenset:
    """The codes to check, by code or prefix (``LD0``, ``ALL``) as in ``check``: all by default."""
    chosen = set(RUNTIME_CODES) if select is None else _matching(select)
    return frozenset(chosen - _matching(ignore))


def _matching(codes: Iterable[str]) -> set:
    matched = set()
    for code in codes:
        code = code.strip().upper()
        if not code:
            continue
        hits = {known for known in RUNTIME_CODES if code == "ALL" or known.startswith(code)}
        if not hits:
            raise UnknownCodeError(f"{code} (run-time codes: {', '.join(RUNTIME_CODES)})")
        matched |= hits
    return matched
