"""``loopdoctor run``: a training script or module, unchanged, under the watch (imports torch)."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from loopdoctor.runtime.runner import run_target

    return run_target(args)
