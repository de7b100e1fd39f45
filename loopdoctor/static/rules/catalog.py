"""Every rule's metadata, read from the rule modules without importing them (or libcst).

A rule declares everything about itself in its own module, as literal class attributes above
its first method (``code``, ``name``, ``summary``, ``fix_hint``, and where they differ from the
defaults ``enabled_by_default`` and ``crossfile_tokens``). Selection, the cache key and
``loopdoctor rules`` need only that, so this module reads those lines with ``ast`` instead of
importing the rule: a cached run and a pre-commit hook stay quick to start. The implementation is
imported when a file is actually parsed; ``tests/test_rule_metadata.py`` checks that both agree.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import textwrap
from dataclasses import dataclass

RULES_DIRECTORY = os.path.dirname(os.path.abspath(__file__))
# The run-time checks (torch): read the same way, for the codes only a run can see (LD2NN).
CHECKS_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(RULES_DIRECTORY)), "runtime", "checks")
RULE_MODULE = re.compile(r"^ld\d{3}_\w+\.py$")
# The class statement and the indented lines under it, up to its first method or decorator.
RULE_CLASS = re.compile(r"^class (\w+)\((?:Rule|Check)\):\n((?:(?:    (?!def |@|async def ).*)?\n)*)", re.M)
DEFAULTS = {"enabled_by_default": True, "crossfile_tokens": ()}


@dataclass(frozen=True)
class RuleInfo:
    code: str
    name: str
    summary: str
    fix_hint: str
    enabled_by_default: bool
    # Words naming the losses for which the rule wants to know what imported model classes return
    # (crossfile.py): a file that has one of them has its local imports read.
    crossfile_tokens: tuple[str, ...]
    implementation: str  # "module:Class" inside loopdoctor.static.rules

    def load(self):
        """The rule class."""
        module, _, cls = self.implementation.partition(":")
        return getattr(importlib.import_module(f"loopdoctor.static.rules.{module}"), cls)


def read_metadata(filename: str, directory: str = "") -> RuleInfo:
    """The metadata a rule module declares: the literal class attributes of its rule class."""
    with open(os.path.join(directory or RULES_DIRECTORY, filename), encoding="utf-8") as file:
        match = RULE_CLASS.search(file.read())
    if match is None:
        raise ValueError(f"{filename}: no `class ...(Rule):` with its metadata above its first method")
    fields = dict(DEFAULTS)
    for statement in ast.parse(textwrap.dedent(match.group(2))).body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
            name = statement.targets[0].id
            if name in RuleInfo.__dataclass_fields__:
                fields[name] = ast.literal_eval(statement.value)
    module = filename[: -len(".py")]
    return RuleInfo(**fields, implementation=f"{module}:{match.group(1)}")


def _catalog() -> tuple[RuleInfo, ...]:
    modules = sorted(name for name in os.listdir(RULES_DIRECTORY) if RULE_MODULE.match(name))
    return tuple(sorted((read_metadata(name) for name in modules), key=lambda info: info.code))


CATALOG: tuple[RuleInfo, ...] = _catalog()
BY_CODE = {info.code: info for info in CATALOG}


def run_time_only() -> tuple[RuleInfo, ...]:
    """The codes only a run can see (no static rule): for ``loopdoctor rules``, never selected
    by ``check``. (Their ``implementation`` names a run-time check, not a static rule.)"""
    modules = sorted(name for name in os.listdir(CHECKS_DIRECTORY) if RULE_MODULE.match(name) and name[:5].upper() not in BY_CODE)
    return tuple(read_metadata(name, CHECKS_DIRECTORY) for name in modules)
PARSE_ERROR_CODE, PARSE_ERROR_NAME = "LD000", BY_CODE["LD000"].name
UNUSED_NOQA_CODE, UNUSED_NOQA_NAME = "LD100", BY_CODE["LD100"].name
