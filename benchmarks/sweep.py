"""Reliability sweep: `loopdoctor check` over this interpreter's standard library and every
installed site-packages directory.

    python benchmarks/sweep.py [--sample N] [DIR ...]

Prints the counts and exits non-zero when any file gave an internal error, or when a file was
reported LD000 (cannot be read or parsed) although Python's own compile() accepts it.
"""

from __future__ import annotations

import argparse
import site
import sys
import sysconfig
import time
import warnings
from collections import Counter
from typing import Optional

sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])
from loopdoctor.static import CheckOptions, lint_paths  # noqa: E402
from loopdoctor.static.discover import discover  # noqa: E402


def default_roots() -> list[str]:
    roots = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    return list(dict.fromkeys(roots))


def compile_rejects(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            data = handle.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError, RecursionError, MemoryError):
        return True
    return False


def sweep(roots: list[str], sample: Optional[int] = None, jobs: Optional[int] = None) -> dict:
    paths = roots
    if sample:
        files = [path for path, _, _ in discover(roots, respect_gitignore=False).files]
        paths = files[:: max(1, len(files) // sample)][:sample]
    start = time.perf_counter()
    report = lint_paths(paths, CheckOptions(cache_dir=None, respect_gitignore=False, jobs=jobs, select=["ALL"]))
    results, errors = report.results, report.errors
    elapsed = time.perf_counter() - start
    codes = Counter(f.code for r in results for f in r.findings)
    unparsable = [r.filename for r in results if any(f.code == "LD000" for f in r.findings)]
    return {
        "files": len(results),
        "parsed": sum(r.parsed for r in results),
        "seconds": elapsed,
        "codes": dict(sorted(codes.items())),
        "internal_errors": [f"{r.filename}: {r.error}" for r in results if r.error and "internal error" in r.error],
        "other_errors": [f"{r.filename}: {r.error}" for r in results if r.error and "internal error" not in r.error] + errors,
        "ld000": unparsable,
        "ld000_compile_accepts": [path for path in unparsable if not compile_rejects(path)],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs="*")
    parser.add_argument("--sample", type=int)
    args = parser.parse_args()
    roots = args.roots or default_roots()
    report = sweep(roots, args.sample)
    print("roots:", *roots, sep="\n  ")
    print(f"files checked {report['files']}, parsed {report['parsed']}, in {report['seconds']:.1f} s")
    print(f"findings by code: {report['codes']}")
    print(f"internal errors: {len(report['internal_errors'])}", *report["internal_errors"][:20], sep="\n  ")
    print(f"LD000 files: {len(report['ld000'])}; of those, compile() accepts: {len(report['ld000_compile_accepts'])}",
          *report["ld000_compile_accepts"][:20], sep="\n  ")
    print(f"other errors: {len(report['other_errors'])}", *report["other_errors"][:20], sep="\n  ")
    return 1 if report["internal_errors"] or report["ld000_compile_accepts"] else 0


if __name__ == "__main__":
    sys.exit(main())
