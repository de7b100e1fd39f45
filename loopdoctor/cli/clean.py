"""``loopdoctor clean``: remove the result cache."""

from __future__ import annotations

import argparse

from loopdoctor.exit_codes import EXIT_CLEAN
from loopdoctor.static.cache import clean, directory_for


def run(args: argparse.Namespace) -> int:
    directory = directory_for(args.cache_dir)
    print(f"removed {directory}" if clean(directory) else f"no cache at {directory}")
    return EXIT_CLEAN
