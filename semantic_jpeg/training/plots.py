"""Training-curve plots like Figure 5.1 of Prakash, PhD thesis (Brandeis 2019): train (left) and test (right)
accuracy per epoch, the mean over runs with a +-1 std band, and the RePr drop phases (S2) shaded."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def plot_training_curves(runs: Mapping[str, Sequence[Sequence[dict]]], path: str | Path, *,
                         drop_intervals: Sequence[tuple[int, int]] = (), title: str = "",
                         xlabel: str = "epoch") -> Path:
    """``runs`` maps a label (e.g. "standard", "RePr (ortho)") to a list of histories (one per seed) as
    returned by :func:`semantic_jpeg.training.fit.fit`. ``drop_intervals`` are (start, end) epochs of the S2
    phases. Saves a PNG at ``path`` and returns the path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for ax, key, name in ((axes[0], "train_accuracy", "training accuracy"),
                          (axes[1], "test_accuracy", "test accuracy")):
        for start, end in drop_intervals:
            ax.axvspan(start, end, color="0.85", zorder=0)
        for label, histories in runs.items():
            curves = [[r[key] for r in h if key in r] for h in histories]
            curves = np.array([c for c in curves if c]) * 100.0
            if curves.size == 0:
                continue
            epochs = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            line, = ax.plot(epochs, mean, marker="o", ms=3, label=f"{label} (n={len(curves)})")
            if len(curves) > 1:
                ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{name} (%)")
        ax.grid(alpha=0.3)
    for ax in axes[::-1]:  # legend on the test panel, or on the train panel when there is no test curve
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", fontsize=8)
            break
    if drop_intervals:
        axes[0].text(0.01, 0.98, "shaded: filters dropped (S2)", transform=axes[0].transAxes, va="top", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
