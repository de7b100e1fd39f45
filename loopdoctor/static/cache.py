"""A persistent result cache, like ruff's ``.ruff_cache``.

One entry per checked file (by its absolute path) holds the raw findings of the rules it was
analysed with, keyed by the file's bytes, its kind (.py or .ipynb), the analysis settings
(``torch-version``), the local modules it depends on and loopdoctor's version: change any of them
and the file is checked again. The selection is applied after the cache: a run that selects
fewer rules is answered by it, one that needs a rule not analysed yet analyses the file again
with the rules of both. An index of the entries lets each run drop those of files that are gone. Entries are small JSON files
written atomically; a corrupt entry or an unwritable directory costs a warning, never a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from typing import Optional, Sequence

from loopdoctor import __version__
from loopdoctor.static.findings import Applicability, Edit, FileResult, Finding, Fix, Position

DEFAULT_DIRECTORY = ".loopdoctor_cache"
INDEX = "files.json"


class Cache:
    def __init__(self, directory: str):
        self.directory = directory
        self.root = os.path.join(directory, __version__)
        self.fingerprint = _implementation_fingerprint()
        self._warned = False
        self._prepared = False
        self._written: dict[str, str] = {}  # absolute path -> entry file, this run

    def key(self, data: bytes, filename: str, dependencies: tuple = (), analysis=None) -> str:
        """``dependencies``: the local modules the file's verdict rests on (crossfile.py), with
        their times and sizes, so that editing one re-checks the file."""
        digest = hashlib.sha256(data)
        digest.update(b"\0ipynb" if filename.endswith(".ipynb") else b"\0py")
        digest.update(("\0" + __version__ + "\0" + self.fingerprint).encode())
        digest.update(("\0" + repr(analysis)).encode())
        for dependency in dependencies:
            digest.update(("\0" + repr(dependency)).encode())
        return digest.hexdigest()

    def get(self, key: str, path: str, filename: str, codes: Sequence[str]) -> tuple[Optional[FileResult], frozenset[str]]:
        """The cached result if it was analysed with every rule in ``codes``, and the rules the
        entry for these bytes was analysed with (none when there is no such entry)."""
        entry_path = self._entry_path(path)
        try:
            with open(entry_path, encoding="utf-8") as handle:
                entry = json.load(handle)
            if entry["key"] != key:
                return None, frozenset()
            analysed = frozenset(entry["codes"])
            return (_result_from_entry(entry["result"], filename) if analysed >= set(codes) else None), analysed
        except (FileNotFoundError, NotADirectoryError):
            return None, frozenset()
        except OSError as error:
            self._warn(f"cannot read the cache in {self.directory}: {error.strerror or error}")
            return None, frozenset()
        except (ValueError, KeyError, TypeError) as error:
            self._warn(f"ignoring a corrupt cache entry {entry_path}: {error}")
            return None, frozenset()

    def put(self, key: str, path: str, result: FileResult, codes: Sequence[str]) -> None:
        if result.error and "internal error" in result.error:
            return  # never remember our own failures
        entry_path = self._entry_path(path)
        if self.write_json(entry_path, {"key": key, "codes": sorted(codes), "result": _entry(result)}):
            self._written[os.path.abspath(path)] = os.path.relpath(entry_path, self.root)

    def save(self) -> None:
        """Record this run's entries in the index and drop the entries of files that are gone.
        The index is re-read just before writing, so concurrent runs lose little."""
        index_path = os.path.join(self.root, INDEX)
        try:
            with open(index_path, encoding="utf-8") as handle:
                index = json.load(handle)
            if not isinstance(index, dict):
                index = {}
        except (OSError, ValueError):
            index = {}
        index.update(self._written)
        gone = [path for path in index if not os.path.exists(path)]
        for path in gone:
            try:
                os.unlink(os.path.join(self.root, index.pop(path)))
            except (OSError, TypeError):
                pass
        if self._written or gone:
            self.write_json(index_path, index)

    def _entry_path(self, path: str) -> str:
        name = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self.root, name[:2], name[2:] + ".json")

    def write_json(self, target: str, value) -> bool:
        """Write ``value`` to ``target`` atomically; False (and one warning) when it cannot be written."""
        try:
            self._prepare()
            os.makedirs(os.path.dirname(target), exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(value, stream)
            os.replace(temporary, target)
            return True
        except OSError as error:
            self._warn(f"cannot write the cache in {self.directory}: {error.strerror or error}")
            return False

    def _prepare(self) -> None:
        if self._prepared:
            return
        os.makedirs(self.directory, exist_ok=True)
        ignore = os.path.join(self.directory, ".gitignore")
        if not os.path.exists(ignore):
            with open(ignore, "w", encoding="utf-8") as handle:
                handle.write("# Automatically created by loopdoctor.\n*\n")
        self._prepared = True

    def _warn(self, message: str) -> None:
        if not self._warned:
            print(f"warning: {message}", file=sys.stderr)
            self._warned = True


def _implementation_fingerprint() -> str:
    """Sizes and times of the checker's own sources: an edited (editable) install is a new version."""
    package = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for directory, _, files in sorted(os.walk(package)):
        for file in sorted(files):
            if file.endswith(".py"):
                status = os.stat(os.path.join(directory, file))
                parts.append(f"{file}:{status.st_size}:{status.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def directory_for(explicit: Optional[str] = None) -> str:
    """The cache directory: ``--cache-dir``, else ``$LOOPDOCTOR_CACHE_DIR``, else the default."""
    return explicit or os.environ.get("LOOPDOCTOR_CACHE_DIR") or DEFAULT_DIRECTORY


def clean(directory: str) -> bool:
    """Remove the cache directory; False when there was none."""
    if not os.path.isdir(directory):
        return False
    shutil.rmtree(directory)
    return True


def _entry(result: FileResult) -> dict:
    return {
        "parsed": result.parsed,
        "error": result.error,
        "notice": result.notice,
        "findings": [
            {**asdict(f), "location": [f.location.row, f.location.column], "end_location": [f.end_location.row, f.end_location.column],
             "fix": f.fix.to_dict() if f.fix is not None else None}
            for f in result.findings
        ],
    }


def _result_from_entry(entry: dict, filename: str) -> FileResult:
    findings = []
    for item in entry["findings"]:
        findings.append(
            Finding(
                filename, Position(*item["location"]), Position(*item["end_location"]), item["code"], item["name"],
                item["message"], item.get("fix_hint"), item.get("cell"), _fix_from_dict(item.get("fix")),
            )
        )
    return FileResult(filename, findings, parsed=entry["parsed"], error=entry["error"], notice=entry.get("notice"))


def _fix_from_dict(data: Optional[dict]):
    if data is None:
        return None
    edits = tuple(
        Edit(Position(e["location"]["row"], e["location"]["column"]), Position(e["end_location"]["row"], e["end_location"]["column"]),
             e["content"], e.get("cell"))
        for e in data["edits"]
    )
    return Fix(Applicability(data["applicability"]), data["message"], edits)
