"""``loopdoctor triage``: the reference trainer under the watch, optionally with a fault (imports torch)."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console

from loopdoctor.demo.faults import make_fault
from loopdoctor.demo.reference import TicketTrainer
from loopdoctor.exit_codes import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS
from loopdoctor.runtime import NonFiniteError, watch


def run(args: argparse.Namespace) -> int:
    fault = make_fault(args.inject, args.step) if args.inject else None
    trainer = TicketTrainer(fault=fault)
    steps = trainer.config.epochs * len(trainer.loader)
    if fault is not None and not 0 <= args.step < steps:
        print(f"error: --step must be between 0 and {steps - 1}: the reference trainer takes {steps} optimizer steps", file=sys.stderr)
        return EXIT_ERROR
    try:
        with watch(trainer.model, trainer.optimizer):
            trainer.fit()
    except NonFiniteError as error:
        if args.json:
            print(json.dumps(error.diagnosis.to_dict()))
        else:
            console = Console()
            if fault is not None:
                console.print(f"injected at step {args.step}: {fault.summary}")
            console.print(error.diagnosis)
        return EXIT_FINDINGS
    if args.json:
        print(json.dumps(None))
    else:
        print(f"no non-finite value in {trainer.step} optimizer steps")
    return EXIT_CLEAN
