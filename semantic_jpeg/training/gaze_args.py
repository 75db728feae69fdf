"""Command-line options of ``semantic-jpeg train gaze`` (torch-free, so the CLI can list them without torch)."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "onnx_models"


def default_cache() -> Path:
    """The feature cache used when --cache is not given: ``$XDG_CACHE_HOME/semantic_jpeg/gaze_features``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "semantic_jpeg" / "gaze_features"


def add_gaze_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the training options of the fixation-prediction model (:mod:`semantic_jpeg.training.gaze`)."""
    parser.add_argument("--data-root", type=Path, required=True,
                        help="folder holding the data sets (sub-folders with images.csv, fixations.csv, stimuli/)")
    parser.add_argument("--train", nargs="+", default=["osie", "eyecrowd"], help="training data sets")
    parser.add_argument("--val", default="nus_scene", help="validation data set ('' for none)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="feature cache folder, 1.7 GB for the default data sets and scales (default: "
                             "$XDG_CACHE_HOME/semantic_jpeg/gaze_features, ~/.cache when the variable is unset)")
    parser.add_argument("--out", type=Path, required=True, help="checkpoint / metrics folder")
    parser.add_argument("--scales", type=int, nargs="+", default=[384, 256],
                        help="working sizes (longer side, multiples of 32); the first sets the output grid")
    parser.add_argument("--hidden", type=int, nargs="+", default=[16, 16], help="readout widths")
    parser.add_argument("--centre-grid", type=int, default=16, help="centre-bias prior grid size")
    parser.add_argument("--blur-sigma", type=float, default=2.0, help="initial blur sigma (output cells)")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (validation LL on NUS peaked at 2-3)")
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (cosine decay)")
    parser.add_argument("--weight-decay", type=float, default=1e-3, help="L2 weight decay of the 1x1 convolutions")
    parser.add_argument("--dropout", type=float, default=0.0, help="channel dropout on the standardised features")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                        help="random horizontal flips of the cached features and fixations")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, data order and flips")
    parser.add_argument("--limit", type=int, default=None, help="first N images per data set (smoke tests)")
    parser.add_argument("--val-every", type=int, default=5, help="validate every N epochs (and at the end)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (0: torch's default; 1 was fastest on a busy 2-core machine)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in OUT from OUT/checkpoint.pt (same settings; --epochs may grow)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous run in OUT (unless --resume) and, with --export, the model files in "
                             "--model-dir")
    parser.add_argument("--export", action="store_true", help="export ONNX + manifest to --model-dir")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="where --export writes the model (required with --export; semantic_jpeg/onnx_models "
                             "in a source checkout replaces the shipped model)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")

