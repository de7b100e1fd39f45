"""``loopdoctor server``: the Language Server, over stdio, for editors (never imports torch)."""

from __future__ import annotations

import argparse
import sys

from loopdoctor.exit_codes import EXIT_CLEAN, EXIT_ERROR


def run(args: argparse.Namespace) -> int:
    try:
        from loopdoctor.server import serve
    except ImportError as error:
        print(f"error: the language server needs pygls ({error}): pip install 'loopdoctor[server]'", file=sys.stderr)
        return EXIT_ERROR
    serve()
    return EXIT_CLEAN
