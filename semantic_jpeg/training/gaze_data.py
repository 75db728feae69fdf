"""Eye-tracking data sets and cached backbone features for the fixation-prediction model (:mod:`.gaze`).

Data set layout (as in ``shared/data/saliency/{osie,eyecrowd,nus_scene}``): ``images.csv`` with columns
``image``, ``width``, ``height`` (stored image size), ``fixations.csv`` with columns ``image``, ``subject``,
``x``, ``y`` (pixels of the stored image, origin top-left; other columns ignored) and ``stimuli/<image>``.

Features: the frozen EfficientNet-Lite0 activations at :data:`TAPS` (strides 8, 16 and 32, from mid-level to
the last head layer), computed for each working size exactly as the runtime does
(:func:`semantic_jpeg.onnx_models.gaze_model.network_pixels`: the full frame, never cropped, resized with
Pillow's antialiased bilinear filter to the largest working size, and the smaller sizes resized from that) and
cached as float16 under a cache folder, one file per (data set, working size, source size). Existing cache files
are reused, and an interrupted extraction resumes from its last checkpoint (every 100 images).
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from semantic_jpeg.onnx_models.gaze_model import network_pixels
from semantic_jpeg.training.efficientnet import INPUT_MEAN, INPUT_STD, EfficientNetLite0

# (name, block index or "head", channels, stride): activations read out by the fixation model
TAPS = (("b4", 4, 40, 8), ("b7", 7, 80, 16), ("b10", 10, 112, 16), ("b14", 14, 192, 32), ("b15", 15, 320, 32),
        ("head", "head", 1280, 32))
CACHE_VERSION = 1


@dataclass
class FixationImage:
    """One stimulus with its fixations: ``xy`` (n, 2) float pixels (x, y) and ``subjects`` (n,) int."""
    name: str
    path: Path
    height: int
    width: int
    xy: np.ndarray
    subjects: np.ndarray
    dataset: str = ""
    extra: dict = field(default_factory=dict)


def read_dataset(root: str | Path, limit: int | None = None) -> list[FixationImage]:
    """Read a fixation data set folder (see the module docstring); images without fixations are skipped."""
    root = Path(root)
    for name in ("images.csv", "fixations.csv", "stimuli"):
        if not (root / name).exists():
            raise FileNotFoundError(f"{root / name} not found: expected a data set folder with images.csv, "
                                    "fixations.csv and stimuli/")
    points = defaultdict(list)
    with open(root / "fixations.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"image", "subject", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{root / 'fixations.csv'} lacks columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                x, y, subject = float(row["x"]), float(row["y"]), int(float(row["subject"]))
            except (TypeError, ValueError):
                x = y = math.nan
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"{root / 'fixations.csv'} line {line}: x, y and subject must be finite numbers, "
                                 f"got {row.get('x')!r}, {row.get('y')!r}, {row.get('subject')!r}")
            points[row["image"]].append((x, y, subject))
    images = []
    with open(root / "images.csv", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if row["image"] not in points:
                continue
            array = np.asarray(points[row["image"]], np.float64)
            try:
                height, width = int(row["height"]), int(row["width"])
            except (TypeError, ValueError, KeyError):
                height = width = 0
            if height < 1 or width < 1:
                raise ValueError(f"{root / 'images.csv'} line {line}: width and height must be positive integers, "
                                 f"got {row.get('width')!r}, {row.get('height')!r}")
            xy = np.stack([np.clip(array[:, 0], 0, width - 1e-3), np.clip(array[:, 1], 0, height - 1e-3)], 1)
            images.append(FixationImage(row["image"], root / "stimuli" / row["image"], height, width, xy,
                                        array[:, 2].astype(np.int64), dataset=root.name))
            if limit is not None and len(images) >= limit:
                break
    if not images:
        raise ValueError(f"{root}: no image with fixations")
    return images


def load_rgb(path: Path) -> np.ndarray:
    """An RGB uint8 array of an image file."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def preprocess(rgb: np.ndarray, working_size: int, source_size: int | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> the normalised (1, 3, h, w) float32 network input at ``working_size``, resized
    from the image or, with ``source_size`` (the model's largest scale), from the image resized to that size:
    the runtime's exact preprocessing (:func:`semantic_jpeg.onnx_models.gaze_model.network_pixels`)."""
    sizes = [working_size] if source_size in (None, working_size) else [source_size, working_size]
    pixels = network_pixels(rgb, sizes)[-1]
    return np.ascontiguousarray(((pixels - INPUT_MEAN) / INPUT_STD).transpose(2, 0, 1)[None], np.float32)


class BackboneTaps(nn.Module):
    """Frozen EfficientNet-Lite0 returning the activations named by :data:`TAPS` (a list, in that order)."""

    def __init__(self, net: EfficientNetLite0 | None = None):
        super().__init__()
        self.net = net if net is not None else EfficientNetLite0(pretrained=True)
        self.net.eval()
        for parameter in self.net.parameters():
            parameter.requires_grad_(False)
        self.block_taps = {index: n for n, (_, index, _, _) in enumerate(TAPS) if index != "head"}
        self.last_block = max(self.block_taps)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        outputs = [None] * len(TAPS)
        x = self.net.stem(image)
        for index, block in enumerate(self.net.blocks):
            x = block(x)
            if index in self.block_taps:
                outputs[self.block_taps[index]] = x
        outputs[-1] = self.net.head(x)
        return outputs


def cache_path(cache_dir: Path, dataset_root: Path, working_size: int, limit: int | None,
               source_size: int | None = None) -> Path:
    source = None if source_size in (None, working_size) else source_size
    key = json.dumps([CACHE_VERSION, str(Path(dataset_root).resolve()), working_size, limit, TAPS]
                     + ([source] if source else []))
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    stem = f"{Path(dataset_root).name}_s{working_size}" + (f"_from{source}" if source else "")
    return Path(cache_dir) / f"{stem}_{digest}.pt"


@torch.no_grad()
def extract_features(dataset_root: str | Path, images: list[FixationImage], working_size: int, cache_dir: Path,
                     backbone: BackboneTaps, device: str = "cpu", progress: bool = True,
                     limit: int | None = None, source_size: int | None = None) -> list[list[torch.Tensor]]:
    """Per image, the float16 tap activations (list of (C, h, w) tensors) at ``working_size``, from the cache
    when present, else computed and cached (partial results are checkpointed every 100 images)."""
    path = cache_path(cache_dir, Path(dataset_root), working_size, limit, source_size)
    partial = path.with_suffix(".partial.pt")
    names = [image.name for image in images]
    if path.is_file():
        stored = torch.load(path, weights_only=True)
        if stored["names"] == names:
            return stored["features"]
    features = []
    if partial.is_file():
        stored = torch.load(partial, weights_only=True)
        if stored["names"] == names:
            features = stored["features"]
    path.parent.mkdir(parents=True, exist_ok=True)
    for position in tqdm(range(len(features), len(images)), desc=f"features {Path(dataset_root).name}@"
                         f"{working_size}", disable=not progress, initial=len(features), total=len(images)):
        rgb = load_rgb(images[position].path)
        batch = torch.from_numpy(preprocess(rgb, working_size, source_size)).to(device)
        features.append([tap[0].to("cpu", torch.float16) for tap in backbone(batch)])
        if (position + 1) % 100 == 0 and position + 1 < len(images):
            torch.save({"names": names, "features": features}, partial)
    torch.save({"names": names, "features": features}, path)
    partial.unlink(missing_ok=True)
    return features
