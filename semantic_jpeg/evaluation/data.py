"""ImageNet sample images for the evaluation: decoded, resized and centre-cropped to the classifier's input."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from semantic_jpeg._cliutil import describe_error

LABEL_COLUMNS = ("filename", "class_index")


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


class LabelRow(NamedTuple):
    """One image of ``labels.csv``: its file name, ImageNet class index and line in the file."""
    filename: str
    class_index: int
    line: int


def read_labels(data_dir: str | Path, subset: int | None = None, seed: int = 0,
                num_classes: int | None = None) -> list[LabelRow]:
    """The images listed in the ``labels.csv`` of ``data_dir`` (columns ``filename``, ``class_index``, others
    ignored); ``subset`` draws that many rows at random with ``seed`` (kept in file order; subsets of different
    sizes are separate draws, not nested), ``None`` takes all. ValueError naming the file and line for a header
    without those columns, an empty file name, a class index that is not an integer or, with ``num_classes``,
    not in 0..num_classes-1, and for a listed image file that does not exist."""
    table = labels_table(data_dir, subset)
    data_dir = Path(data_dir)
    rows = []
    try:
        with open(table, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{table}: the header {','.join(reader.fieldnames or [])!r} lacks the column(s) "
                                 f"{', '.join(missing)}; expected filename,class_index[,...]")
            for row in reader:
                rows.append(_label_row(row, table, reader.line_num, num_classes))
    except UnicodeDecodeError:
        raise ValueError(f"{table} is not a UTF-8 CSV file") from None
    except csv.Error as exc:
        raise ValueError(f"{table}: not a readable CSV file: {exc}") from None
    if not rows:
        raise ValueError(f"{table} lists no images")
    if subset is not None:
        pick = np.sort(np.random.default_rng(seed).choice(len(rows), size=min(subset, len(rows)), replace=False))
        rows = [rows[i] for i in pick]
    for row in rows:
        if not (data_dir / row.filename).is_file():
            raise ValueError(f"{table} line {row.line}: image file {data_dir / row.filename} does not exist")
    return rows


def _label_row(row: dict, table: Path, line: int, num_classes: int | None) -> LabelRow:
    where = f"{table} line {line}"
    name, text = ((row.get(c) or "").strip() for c in LABEL_COLUMNS)
    if not name:
        raise ValueError(f"{where}: no file name")
    try:
        index = int(text)
    except ValueError:
        raise ValueError(f"{where}: class_index {text!r} is not an integer") from None
    if index < 0 or (num_classes is not None and index >= num_classes):
        limit = f"0..{num_classes - 1} (the classifier's {num_classes} classes)" if num_classes else "0 or more"
        raise ValueError(f"{where}: class_index {index} is outside {limit}")
    return LabelRow(name, index, line)


def load_imagenet_samples(data_dir: str | Path, size: int = 224, subset: int | None = None,
                          seed: int = 0, num_classes: int | None = None) -> ImageSet:
    """The images of :func:`read_labels`, resized and centre-cropped to ``size``; ValueError naming the file
    for an image that cannot be read."""
    data_dir = Path(data_dir)
    rows = read_labels(data_dir, subset, seed, num_classes)
    images = np.stack([_load_image(data_dir / r.filename, size) for r in rows])
    labels = np.array([r.class_index for r in rows], dtype=np.int64)
    return ImageSet(images, labels, [r.filename for r in rows])


def _load_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return resize_center_crop(image, size)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: {describe_error(exc, path)}") from None
