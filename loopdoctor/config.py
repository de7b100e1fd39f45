"""Settings from ``[tool.loopdoctor]`` in pyproject.toml, merged with the command line, as ruff does.

Each checked file takes the nearest pyproject.toml above it that has a ``[tool.loopdoctor]``
table or declares a torch requirement (or the file given with ``--config``). Command-line
``--select`` / ``--ignore`` replace the file's ``select`` / ``ignore``; ``--extend-select`` adds
to them. ``torch-version`` (like ruff's ``target-version``) is the oldest torch the code runs on;
without it, the lower bound of the project's declared torch requirement.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

from loopdoctor.static.rules import UnknownCodeError, check_codes

# The project's own training vocabulary, added to loopdoctor's (as ruff's `logger-objects`).
VOCABULARY_KEYS = {
    "model-names": "model_names", "optimizer-names": "optimizer_names", "loss-names": "loss_names",
    "optimizer-step-methods": "step_methods", "grad-disabling-functions": "grad_disabling",
}
KNOWN_KEYS = {"select", "ignore", "extend-select", "per-file-ignores", "exclude", "extend-exclude", "torch-version", *VOCABULARY_KEYS}
VERSION = re.compile(r"^\s*(\d+)(?:\.(\d+))?")
# ">=2.6", "==2.6.*", "~=2.6", ">2.5": the bounds below which torch is not installed.
LOWER_BOUND = re.compile(r"(>=|==|~=|>)\s*(\d+(?:\.\d+)?)")
TORCH_REQUIREMENT = re.compile(r"^\s*torch(?![\w.-])\s*(?:\[[^\]]*\])?\s*\(?([^;]*)", re.IGNORECASE)
DEFAULT_EXCLUDES = (
    ".git", ".hg", ".svn", "__pycache__", "build", "dist", "node_modules", ".venv", "venv",
    ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".loopdoctor_cache",
    ".eggs", "site-packages", "*.egg-info", ".ipynb_checkpoints",
)


class ConfigError(Exception):
    """A configuration problem, phrased for the user with the file it comes from."""


@dataclass(frozen=True)
class AnalysisSettings:
    """The settings that change what a rule finds (and so key the cache); plain and picklable."""

    torch_version: Optional[tuple[int, int]] = None  # the oldest torch the code runs on; None: any
    # Names that mean a model, an optimizer or a loss function (`agent`, `opt_d`, `yolo_loss`).
    model_names: tuple[str, ...] = ()
    optimizer_names: tuple[str, ...] = ()
    loss_names: tuple[str, ...] = ()
    step_methods: tuple[str, ...] = ()  # wrapper methods that step an optimizer (`step_and_update_lr`)
    # Decorators and context managers that turn gradients off (`smart_inference_mode`), by
    # their name or qualified name.
    grad_disabling: tuple[str, ...] = ()

    def torch_at_least(self, major: int, minor: int) -> bool:
        return self.torch_version is not None and self.torch_version >= (major, minor)


@dataclass
class Settings:
    root: str  # directory that globs are relative to
    source: Optional[str] = None  # the pyproject.toml, if any
    select: Optional[list[str]] = None
    ignore: list[str] = field(default_factory=list)
    extend_select: list[str] = field(default_factory=list)
    per_file_ignores: dict[str, list[str]] = field(default_factory=dict)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDES
    extend_exclude: tuple[str, ...] = ()
    analysis: AnalysisSettings = AnalysisSettings()
    torch_version_from: Optional[str] = None  # where analysis.torch_version was read

    def is_excluded(self, path: str) -> bool:
        """Does an exclude pattern match the path's name or its path relative to the root?"""
        name = os.path.basename(os.path.normpath(path))
        relative = os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")
        for pattern in (*self.exclude, *self.extend_exclude):
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(relative, pattern.rstrip("/")):
                return True
        return False

    def ignored_for(self, path: str) -> list[str]:
        relative = os.path.relpath(os.path.abspath(path), self.root).replace(os.sep, "/")
        name = os.path.basename(path)
        codes: list[str] = []
        for pattern, ignored in self.per_file_ignores.items():
            if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(name, pattern):
                codes.extend(ignored)
        return codes


def load_settings(path: str) -> Settings:
    """Read ``[tool.loopdoctor]`` from one pyproject.toml (an empty table if it has none)."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from error
    table = data.get("tool", {}).get("loopdoctor", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.loopdoctor] must be a table")
    unknown = sorted(set(table) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key in [tool.loopdoctor]: {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_KEYS))})")
    settings = Settings(root=os.path.dirname(os.path.abspath(path)), source=path)
    if "select" in table:
        settings.select = _codes(table, "select", path)
    settings.ignore = _codes(table, "ignore", path) if "ignore" in table else []
    settings.extend_select = _codes(table, "extend-select", path) if "extend-select" in table else []
    if "exclude" in table:
        settings.exclude = tuple(_strings(table, "exclude", path))
    if "extend-exclude" in table:
        settings.extend_exclude = tuple(_strings(table, "extend-exclude", path))
    ignores = table.get("per-file-ignores", {})
    if not isinstance(ignores, dict):
        raise ConfigError(f"{path}: per-file-ignores must be a table of glob = [codes]")
    settings.per_file_ignores = {glob: _codes(ignores, glob, path) for glob in ignores}
    vocabulary = {field: tuple(_strings(table, key, path)) for key, field in VOCABULARY_KEYS.items() if key in table}
    if "torch-version" in table:
        settings.analysis = AnalysisSettings(_version(table["torch-version"], path), **vocabulary)
        settings.torch_version_from = f"torch-version in {path}"
    else:
        declared = declared_torch_version(data.get("project", {}))
        settings.analysis = AnalysisSettings(declared, **vocabulary)
        if declared is not None:
            settings.torch_version_from = f"the torch requirement in {path}"
    return settings


def _version(value, path: str) -> tuple[int, int]:
    match = VERSION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{path}: torch-version must be a string such as \"2.6\", not {value!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def declared_torch_version(project) -> Optional[tuple[int, int]]:
    """The lowest torch a ``[project]`` table admits (``torch>=2.6`` -> (2, 6)), from its
    dependencies and optional dependencies; None when it declares no lower bound."""
    if not isinstance(project, dict):
        return None
    requirements = list(project.get("dependencies", []) or [])
    for extra in (project.get("optional-dependencies", {}) or {}).values():
        requirements += list(extra or [])
    bounds = []
    for requirement in requirements:
        match = TORCH_REQUIREMENT.match(requirement) if isinstance(requirement, str) else None
        if match is None:
            continue
        lower = [tuple(int(part) for part in (version.split(".") + ["0"])[:2]) for _, version in LOWER_BOUND.findall(match.group(1))]
        if lower:
            bounds.append(max(lower))
    return min(bounds) if bounds else None


def _strings(table: dict, key: str, path: str) -> list[str]:
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{path}: {key} must be a list of strings")
    return value


def _codes(table: dict, key: str, path: str) -> list[str]:
    codes = _strings(table, key, path)
    try:
        check_codes(codes)
    except UnknownCodeError as error:
        raise ConfigError(f"{path}: unknown rule code or prefix in {key}: {error}") from error
    return codes


class SettingsFinder:
    """The nearest configuration above each path, cached per directory."""

    def __init__(self, explicit: Optional[str] = None):
        self.explicit = load_settings(explicit) if explicit else None
        self._by_directory: dict[str, Settings] = {}

    def for_path(self, path: str) -> Settings:
        if self.explicit is not None:
            return self.explicit
        directory = os.path.abspath(path if os.path.isdir(path) else os.path.dirname(path) or ".")
        return self._for_directory(directory)

    def _for_directory(self, directory: str) -> Settings:
        cached = self._by_directory.get(directory)
        if cached is not None:
            return cached
        candidate = os.path.join(directory, "pyproject.toml")
        parent = os.path.dirname(directory)
        if os.path.isfile(candidate) and _is_settings_file(candidate):
            settings = load_settings(candidate)
        elif parent != directory:
            settings = self._for_directory(parent)
        else:
            settings = Settings(root=os.getcwd())
        self._by_directory[directory] = settings
        return settings


def _is_settings_file(path: str) -> bool:
    """Has a ``[tool.loopdoctor]`` table, or declares which torch the project needs."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    if b"tool.loopdoctor" in data:
        return True
    if b"torch" not in data:
        return False
    try:
        return declared_torch_version(tomllib.loads(data.decode("utf-8")).get("project")) is not None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
