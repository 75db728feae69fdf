"""Saliency heatmap overlays (PNG-ready RGB arrays) for showing what the encoder did."""
import numpy as np

# colour stops of a blue -> cyan -> green -> yellow -> red ramp
_STOPS = np.array([[0, 0, 128], [0, 160, 255], [0, 200, 80], [255, 220, 0], [220, 0, 0]], dtype=np.float64)


def colorize(saliency: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 colours for a map in [0, 1]."""
    x = np.clip(saliency, 0.0, 1.0) * (len(_STOPS) - 1)
    i = np.minimum(x.astype(np.int64), len(_STOPS) - 2)
    t = (x - i)[..., None]
    return np.rint(_STOPS[i] * (1 - t) + _STOPS[i + 1] * t).astype(np.uint8)


def overlay(rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image blended with its coloured map (grey images are shown in grey under the colours)."""
    base = rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
    return np.rint((1 - alpha) * base + alpha * colorize(saliency)).astype(np.uint8)
