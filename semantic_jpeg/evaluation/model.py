"""The classifier under attack: EfficientNet-Lite0 (``semantic_jpeg.training.efficientnet``) on [0,1] RGB
NCHW input, its batched top-1 prediction, and the ART estimator wrapping it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from semantic_jpeg.training.efficientnet import NUM_CLASSES, efficientnet_lite0, pretrained_weights_path


def load_classifier(device: str = "cpu") -> torch.nn.Module:
    """Pretrained EfficientNet-Lite0 in eval mode taking RGB in [0,1], gradients off for its weights."""
    model = efficientnet_lite0(pretrained=True, unit_range_input=True).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def model_id() -> str:
    """Names the weights in cache keys: a change of weights file never reuses stale adversarial images."""
    path = Path(pretrained_weights_path())
    return f"{path.name}:{path.stat().st_size}"


def to_nchw(images: np.ndarray) -> np.ndarray:
    """uint8 or float N x H x W x 3 RGB -> float32 NCHW in [0,1]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected N x H x W x 3 RGB images, got shape {images.shape}")
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """float NCHW -> float32 NHWC (the layout of the OpenCV-style filters)."""
    return np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1))


@torch.no_grad()
def predict(model: torch.nn.Module, x_nchw: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Top-1 class of each float32 NCHW [0,1] image."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x_nchw), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(x_nchw[i:i + batch_size], np.float32)).to(device)
        out.append(model(batch).argmax(dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def art_classifier(model: torch.nn.Module, image_size: int = 224):
    """ART ``PyTorchClassifier`` over ``model`` (cross-entropy loss, clip values [0,1], NCHW)."""
    from art.estimators.classification import PyTorchClassifier

    device = next(model.parameters()).device
    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(),
                             input_shape=(3, image_size, image_size), nb_classes=NUM_CLASSES,
                             clip_values=(0.0, 1.0), channels_first=True,
                             device_type="gpu" if device.type == "cuda" else "cpu")
