"""README figure: images, their MS-ROI maps, and crops of a plain JPEG and a semantic JPEG of equal size.

Row 1 crops the map's most salient window (chelsea: the map finds the cat); row 2 crops the astronaut's face,
which the ImageNet-trained map misses (no "person" class), to show the failure mode honestly.

    python benchmarks/figure_codec.py   # writes docs/img/codec_example.png
"""
import io
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image
from skimage import data

import semantic_jpeg
from semantic_jpeg.codec.heatmap import overlay

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "codec_example.png"
QUALITY = 30
CROP = 160


def most_salient_window(sal, size):
    """Top-left corner of the size x size window with the largest mean map value."""
    c = np.cumsum(np.cumsum(np.pad(sal, ((1, 0), (1, 0))), 0), 1)
    sums = c[size:, size:] - c[:-size, size:] - c[size:, :-size] + c[:-size, :-size]
    return np.unravel_index(np.argmax(sums), sums.shape)


def row(ax, name, rgb, corner):
    plain = io.BytesIO()
    Image.fromarray(rgb).save(plain, "JPEG", quality=QUALITY)
    r = semantic_jpeg.encode(rgb, match_jpeg_quality=QUALITY, return_result=True)
    if corner is None:
        corner = most_salient_window(r.saliency, CROP)
    crop = (slice(corner[0], corner[0] + CROP), slice(corner[1], corner[1] + CROP))

    def shown(data):
        dec = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        return dec[crop], 10 * np.log10(255 ** 2 / np.mean((dec[crop].astype(float) - rgb[crop]) ** 2))

    (p_img, p_psnr), (s_img, s_psnr) = shown(plain.getvalue()), shown(r.data)
    ax[0].imshow(rgb)
    ax[0].add_patch(plt.Rectangle(corner[::-1], CROP, CROP, fill=False, color="white", lw=2))
    ax[0].set_title(f"{name} (box: crop shown)")
    ax[1].imshow(overlay(rgb, r.saliency))
    ax[1].set_title("MS-ROI map (shipped model)")
    ax[2].imshow(p_img)
    ax[2].set_title(f"plain JPEG Q{QUALITY}: {plain.tell()} B\ncrop PSNR {p_psnr:.2f} dB")
    ax[3].imshow(s_img)
    ax[3].set_title(f"semantic JPEG: {r.size} B\ncrop PSNR {s_psnr:.2f} dB")
    print(f"{name}: {r.summary()}; crop PSNR plain {p_psnr:.2f} dB, semantic {s_psnr:.2f} dB")


def main():
    fig, ax = plt.subplots(2, 4, figsize=(16, 9.6))
    fig.subplots_adjust(hspace=0.35)
    row(ax[0], "chelsea", data.chelsea(), None)
    row(ax[1], "astronaut", data.astronaut(), (40, 170))
    for a in ax.ravel():
        a.axis("off")
    fig.tight_layout()
    fig.savefig(OUT, dpi=72)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
