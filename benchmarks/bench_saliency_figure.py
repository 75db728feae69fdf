"""Figure of the shipped maps (MS-ROI, Aug-MSROI, R-CAM) on scikit-image photos and a two-object canvas.

    python benchmarks/bench_saliency_figure.py   # writes docs/img/saliency_maps.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from semantic_jpeg.onnx_models import default_model  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs/img/saliency_maps.png"


def two_object_canvas() -> np.ndarray:
    canvas = np.full((720, 1280, 3), 128, np.uint8)
    canvas[80:346, 100:500] = np.asarray(Image.fromarray(data.chelsea()).resize((400, 266)))
    canvas[380:646, 780:1180] = np.asarray(Image.fromarray(data.coffee()).resize((400, 266)))
    return canvas


def main() -> int:
    model = default_model()
    images = {"astronaut": data.astronaut(), "coffee": data.coffee(), "rocket": data.rocket(),
              "cat + espresso on a canvas": two_object_canvas()}
    methods = {"MS-ROI": lambda im: model.msroi_map(im), "Aug-MSROI (n=5)": lambda im: model.aug_msroi_map(im, seed=0),
               "R-CAM (k=5)": lambda im: model.rcam_map(im)}
    fig, axes = plt.subplots(len(images), 1 + len(methods), figsize=(13, 2.6 * len(images)))
    for row, (name, image) in enumerate(images.items()):
        top = model.predict_topk(image, 1)[0]
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(f"{name}\ntop-1: {top[1]} ({top[2]:.2f})", fontsize=9)
        for col, (method, function) in enumerate(methods.items(), start=1):
            axes[row, col].imshow(image)
            axes[row, col].imshow(function(image), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            axes[row, col].set_title(method, fontsize=9)
    for axis in axes.ravel():
        axis.axis("off")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
