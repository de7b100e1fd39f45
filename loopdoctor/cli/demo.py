"""``loopdoctor demo``: train the reference ticket router and print its receipt (imports torch)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from rich.console import Console
from rich.table import Table

from loopdoctor.exit_codes import EXIT_CLEAN, EXIT_ERROR
from loopdoctor.demo.plots import plot_curves
from loopdoctor.demo.reference import TicketTrainer, load_checkpoint


def run(args: argparse.Namespace) -> int:
    for option, path in (("--plot", args.plot), ("--checkpoint", args.checkpoint)):
        directory = os.path.dirname(os.path.abspath(path)) if path else None
        if directory and not os.path.isdir(directory):
            print(f"error: {option} {path}: the directory {directory} does not exist", file=sys.stderr)
            return EXIT_ERROR
    trainer = TicketTrainer()
    receipt = trainer.fit()
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = args.checkpoint or os.path.join(directory, "ticket-router.pt")
            trainer.save(path)
            reloaded, _ = load_checkpoint(path)  # proves the checkpoint reloads with weights_only=True
        if args.plot:
            plot_curves(receipt, args.plot)
    except ImportError:
        print("error: --plot needs matplotlib: pip install 'loopdoctor[plot]'", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"error: cannot write {error.filename or path}: {error.strerror or error}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(receipt.to_dict()))
        return EXIT_CLEAN
    console = Console()
    table = Table(title="reference ticket router: training receipt", show_header=False)
    table.add_row("validation loss, epoch 1", f"{receipt.val_loss[0]:.6f}")
    table.add_row(f"validation loss, epoch {len(receipt.val_loss)}", f"{receipt.val_loss[-1]:.6f}")
    table.add_row("selected epoch", f"{receipt.best_epoch} (validation loss {receipt.best_val_loss:.6f})")
    table.add_row("selected accuracy", f"{receipt.selected_accuracy:.3f}")
    table.add_row("saved tensors", str(receipt.saved_tensors))
    table.add_row("split identity", receipt.split["identity"])
    table.add_row("labels", ", ".join(receipt.labels))
    if args.checkpoint:
        table.add_row("checkpoint", args.checkpoint)
    console.print(table)
    return EXIT_CLEAN
