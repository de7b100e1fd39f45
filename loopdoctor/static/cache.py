"""A persistent result cache, like ruff's ``.ruff_cache``.

An entry is keyed by the file's bytes, its kind (.py or .ipynb), the selected rule codes and
loopdoctor's version: change any of them and the file is checked again. Entries are small JSON
files written atomically; a corrupt entry or an unwritable directory costs a warning, never a
failure.
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
from loopdoctor.static.findings import Edit, FileResult, Finding, Fix, Position

DEFAULT_DIRECTORY = ".loopdoctor_cache"


class Cache:
    def __init__(self, directory: str):
        self.directory = directory
        self.root = os.path.join(directory, __version__)
        self._fingerprint = _implementation_fingerprint()
        self._warned = False
        self._prepared = False

    def key(self, data: bytes, filename: str, codes: Sequence[str], dependencies: tuple = ()) -> str:
        """``dependencies``: the local modules the file's verdict rests on (crossfile.py), with
        their times and sizes, so that editing one re-checks the file."""
        digest = hashlib.sha256(data)
        digest.update(b"\0ipynb" if filename.endswith(".ipynb") else b"\0py")
        digest.update(("\0" + ",".join(sorted(codes)) + "\0" + __version__ + "\0" + self._fingerprint).encode())
        for dependency in dependencies:
            digest.update(("\0" + repr(dependency)).encode())
        return digest.hexdigest()

    def get(self, key: str, filename: str) -> Optional[FileResult]:
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as handle:
                entry = json.load(handle)
            return _result_from_entry(entry, filename)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as error:
            self._warn(f"cannot read the cache in {self.directory}: {error.strerror or error}")
            return None
        except (ValueError, KeyError, TypeError) as error:
            self._warn(f"ignoring a corrupt cache entry {path}: {error}")
            return None

    def put(self, key: str, result: FileResult) -> None:
        if result.error and "internal error" in result.error:
            return  # never remember our own failures
        path = self._path(key)
        try:
            self._prepare()
            os.makedirs(os.path.dirname(path), exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(_entry(result), stream)
            os.replace(temporary, path)
        except OSError as error:
            self._warn(f"cannot write the cache in {self.directory}: {error.strerror or error}")

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key[:2], key[2:] + ".json")

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
        Edit(Position(e["location"]["row"], e["location"]["column"]), Position(e["end_location"]["row"], e["end_location"]["column"]), e["content"])
        for e in data["edits"]
    )
    return Fix(data["applicability"], data["message"], edits)
