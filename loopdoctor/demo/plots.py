"""The reference trainer's loss curves, drawn with matplotlib (the ``plot`` extra)."""

from __future__ import annotations


def plot_curves(receipt, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(receipt.val_loss) + 1)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(epochs, receipt.train_loss, label="training loss (row-weighted)")
    axis.plot(epochs, receipt.val_loss, label="validation loss (eval, no_grad)")
    axis.scatter([receipt.best_epoch], [receipt.best_val_loss], color="red", zorder=3,
                 label=f"selected: epoch {receipt.best_epoch}, {receipt.best_val_loss:.4f}")
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("cross-entropy")
    axis.set_title("reference ticket router")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
