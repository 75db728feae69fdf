"""Data for the training tools: an in-memory batch loader with reproducible per-epoch shuffling and
augmentation, the fixed CIFAR-10 split used by the RePr benchmark, and image folders with (multi-)labels or
without labels (distillation)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC RGB -> float32 NCHW in [0, 1]."""
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got "
                         f"{getattr(images, 'dtype', type(images))} {getattr(images, 'shape', '')}")
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


class ArrayLoader:
    """Batches of (inputs, targets) from in-memory tensors. Shuffling and augmentation (random crop with
    ``pad`` pixels of zero padding + horizontal flip, the usual CIFAR augmentation) draw from a generator
    seeded with ``seed + epoch``; call ``set_epoch`` (as with ``DistributedSampler``) so a resumed run sees
    the same batches as an uninterrupted one. ``samples_per_epoch`` (default: the data size) makes an "epoch"
    a slice of that many examples from the stream of shuffled full passes, for schedules finer than a pass."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int = 128, *, shuffle: bool = True,
                 augment: bool = False, pad: int = 4, seed: int = 0, samples_per_epoch: int | None = None):
        if len(inputs) == 0:
            raise ValueError("no training examples")
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if samples_per_epoch is not None and samples_per_epoch <= 0:
            raise ValueError(f"samples_per_epoch must be positive, got {samples_per_epoch}")
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.shuffle, self.augment, self.pad, self.seed = batch_size, shuffle, augment, pad, seed
        self.samples_per_epoch = samples_per_epoch or len(inputs)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (self.samples_per_epoch + self.batch_size - 1) // self.batch_size

    def _pass_order(self, n_pass: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(len(self.inputs))
        return torch.randperm(len(self.inputs), generator=torch.Generator().manual_seed(self.seed + 7919 * n_pass))

    def _epoch_indices(self) -> torch.Tensor:
        """Indices of this epoch: positions [epoch*S, (epoch+1)*S) of the stream of shuffled passes."""
        start = self.epoch * self.samples_per_epoch
        stop = start + self.samples_per_epoch
        n = len(self.inputs)
        chunks = [self._pass_order(p)[max(start - p * n, 0):stop - p * n]
                  for p in range(start // n, (stop - 1) // n + 1)]
        return torch.cat(chunks)

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (self.pad,) * 4)
        dy = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None].expand(n, x.shape[1], h, w)
        cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :].expand(n, x.shape[1], h, w)
        batch = torch.arange(n)[:, None, None, None]
        channel = torch.arange(x.shape[1])[None, :, None, None]
        out = padded[batch, channel, rows, cols]
        flip = torch.rand(n, generator=gen) < 0.5
        out[flip] = out[flip].flip(3)
        return out

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = self._epoch_indices()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.inputs[idx]
            if self.augment:
                x = self._augment(x, gen)
            yield x, self.targets[idx]


def cifar_split(path: str | Path, n_train: int = 8000, seed: int = 0):
    """The fixed train/test split of an ``images``/``labels`` npz (e.g. the 10 000 CIFAR-10 test images of
    ../shared/data/cifar10): a permutation drawn with ``seed``, first ``n_train`` for training, the rest for
    test. Returns ``(x_train, y_train, x_test, y_test)`` as float NCHW tensors in [0,1] and int64 labels."""
    path = Path(path)
    arrays = load_npz(path, ("images", "labels"))
    images = arrays["images"]
    labels = class_labels(arrays["labels"], len(images), path)
    if not 0 < n_train < len(images):
        raise ValueError(f"n_train must lie in (0, {len(images)}), got {n_train}")
    order = np.random.default_rng(seed).permutation(len(images))
    x = images_to_tensor(images[order])
    y = labels[torch.from_numpy(order)]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


MAX_CLASSES = 100_000  # a label beyond it is a mistake (it would size a classifier of that many outputs)


def load_npz(path: Path, keys: tuple[str, ...]) -> dict:
    """The arrays ``keys`` of the .npz file ``path``; FileNotFoundError or ValueError naming the file when it is
    missing, unreadable, a single array (.npy) or lacks one of them."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path} is not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single array; an .npz archive with arrays {list(keys)} is needed")
    with archive:
        missing = [key for key in keys if key not in archive]
        if missing:
            raise ValueError(f"{path} must hold arrays {list(keys)}; it lacks {missing} (it has {archive.files})")
        try:
            return {key: archive[key] for key in keys}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: {exc}") from None


def class_labels(labels: np.ndarray, count: int, path) -> torch.Tensor:
    """``labels`` (of the file ``path``) as an int64 tensor of class indices 0..C-1, one per image of ``count``;
    ValueError naming the file otherwise (float, negative, 2-D or absurdly large labels)."""
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"{path}: 'labels' must be one class index per image ({count}), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be integer class indices (one integer class index per image), "
                         f"got {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
        raise ValueError(f"{path}: 'labels' must be class indices in 0..{MAX_CLASSES - 1}, got "
                         f"{labels.min()}..{labels.max()}")
    return torch.from_numpy(labels.astype(np.int64))


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); a clear error when the folder is missing or empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}")
    return files


def load_image(path: Path, size: int) -> torch.Tensor:
    """RGB float CHW tensor in [0, 1], resized to ``size`` x ``size``."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.BILINEAR)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image file that Pillow can read") from None
    except (OSError, SyntaxError) as exc:  # truncated or corrupt data (Pillow raises both)
        raise ValueError(f"{path}: {exc}") from None
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def labelled_folder(folder: str | Path, size: int = 224):
    """An image folder with labels, for the MS-ROI network: either one sub-folder per class (single label)
    or a ``labels.csv`` with columns ``file,labels`` where ``labels`` is ``;``-separated (multi-label).
    Returns ``(images NCHW float, multi-hot targets float (N, C), class names)``."""
    folder = Path(folder)
    files = list_images(folder)
    csv_path = folder / "labels.csv"
    if csv_path.is_file():
        try:
            with open(csv_path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if not {"file", "labels"} <= set(reader.fieldnames or ()):
                    raise ValueError(f"{csv_path} must have the columns file,labels; its header is "
                                     f"{','.join(reader.fieldnames or ())!r}")
                rows = []
                for line, r in enumerate(reader, start=2):
                    if r["file"] is None or r["labels"] is None:
                        raise ValueError(f"{csv_path} line {line}: needs a file and a labels field")
                    rows.append((r["file"], [t for t in r["labels"].split(";") if t]))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{csv_path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not rows:
            raise ValueError(f"{csv_path} lists no images")
        files = [folder / name for name, _ in rows]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images listed in {csv_path} are missing, e.g. {missing[0]}")
        tag_lists = [tags for _, tags in rows]
    else:
        tag_lists = [[p.relative_to(folder).parts[0]] if len(p.relative_to(folder).parts) > 1 else [] for p in files]
        if any(not t for t in tag_lists):
            raise ValueError(f"{folder}: put images in one sub-folder per class or add a labels.csv")
    classes = sorted({t for tags in tag_lists for t in tags})
    if len(classes) < 1:
        raise ValueError(f"{folder}: no class labels found")
    index = {c: i for i, c in enumerate(classes)}
    targets = torch.zeros(len(files), len(classes))
    for i, tags in enumerate(tag_lists):
        targets[i, [index[t] for t in tags]] = 1.0
    images = torch.stack([load_image(p, size) for p in files])
    return images, targets, classes
