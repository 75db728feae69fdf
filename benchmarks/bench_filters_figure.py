"""Before/after picture of the purification filters for the README.

    nice python benchmarks/bench_filters_figure.py     # writes docs/img/filters_before_after.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from semantic_jpeg.defense_filters import pixel_deflection, preset  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared/data"
OUT = Path(__file__).resolve().parents[1] / "docs/img/filters_before_after.png"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    from semantic_jpeg.onnx_models import default_model

    rgb = np.asarray(Image.open(args.data / "kodak" / "kodim23.png").convert("RGB"))
    rcam = default_model().rcam_map(rgb, color_order="RGB")
    deflected = pixel_deflection(rgb, 100, 10, saliency=rcam, rng=0, color_order="RGB")
    purified = preset("pd+rcam+dwt")(rgb, rng=0, saliency=rcam, color_order="RGB")
    many = pixel_deflection(rgb, 20000, 10, saliency=rcam, rng=0, color_order="RGB")
    panels = [(rgb, "input"), (rcam, "R-CAM (eq. 4.5)"),
              (many, "R-CAM-targeted PD, K=20000\n(exaggerated to show where)"),
              (purified, "pd+rcam+dwt (K=100, r=10,\nBayesShrink sigma=0.04)"),
              (np.abs(purified.astype(int) - rgb).sum(-1), "|pd+rcam+dwt - input|")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (image, title) in zip(axes, panels):
        ax.imshow(image, cmap="magma" if image.ndim == 2 else None)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    changed = int((deflected != rgb).any(-1).sum())
    fig.suptitle(f"kodim23: K=100 targeted deflections moved {changed} pixels; the wavelet step smooths "
                 f"the whole frame", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
