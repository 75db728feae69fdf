"""ImageNet sample images for the evaluation: decoded, resized and centre-cropped to the classifier's input."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass
class ImageSet:
    """Images as uint8 RGB ``N x H x W x 3`` with their ImageNet class indices and file names."""
    images: np.ndarray
    labels: np.ndarray
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> ImageSet:
        index = np.asarray(index, dtype=np.int64)
        return ImageSet(self.images[index], self.labels[index], [self.names[i] for i in index])


def resize_center_crop(image: Image.Image, size: int = 224, resize: int = 256) -> np.ndarray:
    """Resize the shorter side to ``resize`` (bicubic, antialiased) and take the central ``size`` square."""
    if size <= 0 or resize < size:
        raise ValueError(f"need 0 < size <= resize, got size={size}, resize={resize}")
    image = image.convert("RGB")
    w, h = image.size
    scale = resize / min(w, h)
    image = image.resize((max(resize, round(w * scale)), max(resize, round(h * scale))), Image.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def labels_table(data_dir: str | Path, subset: int | None = None) -> Path:
    """The ``labels.csv`` of an imagenet_samples folder; FileNotFoundError without one, ValueError for a
    ``subset`` below 1 (``None``: all images)."""
    if subset is not None and subset < 1:
        raise ValueError(f"subset must be a positive number of images (all: None, --subset 0), got {subset}")
    if not str(data_dir):
        raise ValueError("no data folder given: pass the imagenet_samples folder (labels.csv and its images), "
                         "e.g. --data DIR")
    table = Path(data_dir) / "labels.csv"
    if not table.is_file():
        raise FileNotFoundError(f"no labels.csv in {data_dir} (expected the imagenet_samples folder)")
    return table


def load_imagenet_samples(data_dir: str | Path, size: int = 224, subset: int | None = None,
                          seed: int = 0) -> ImageSet:
    """Read ``labels.csv`` (filename, class_index, ...) in ``data_dir``; ``subset`` draws that many rows at
    random with ``seed`` (kept in file order; subsets of different sizes are separate draws, not nested),
    ``None`` takes all."""
    data_dir = Path(data_dir)
    table = labels_table(data_dir, subset)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{table} lists no images")
    if subset is not None:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=min(subset, len(rows)), replace=False))
        rows = [rows[i] for i in pick]
    images = np.stack([resize_center_crop(Image.open(data_dir / r["filename"]), size) for r in rows])
    labels = np.array([int(r["class_index"]) for r in rows], dtype=np.int64)
    return ImageSet(images, labels, [r["filename"] for r in rows])
