"""``loopdoctor run``: a training script or module, unchanged, under the watch (imports torch)."""

from __future__ import annotations

import argparse

from loopdoctor.runtime.runner import run_target


def run(args: argparse.Namespace) -> int:
    return run_target(args)
