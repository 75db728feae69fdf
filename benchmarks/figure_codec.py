"""README figure: an image, its MS-ROI map, and crops of a plain JPEG and a semantic JPEG of equal size.

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


def main():
    rgb = data.astronaut()
    plain = io.BytesIO()
    Image.fromarray(rgb).save(plain, "JPEG", quality=30)
    r = semantic_jpeg.encode(rgb, match_jpeg_quality=30, return_result=True)
    dec_plain = np.asarray(Image.open(io.BytesIO(plain.getvalue())))
    dec_sem = np.asarray(Image.open(io.BytesIO(r.data)))
    crop = (slice(40, 240), slice(150, 350))  # the face

    def psnr(a):
        return 10 * np.log10(255 ** 2 / np.mean((a[crop].astype(float) - rgb[crop]) ** 2))

    fig, ax = plt.subplots(1, 4, figsize=(16, 4.4))
    ax[0].imshow(rgb)
    ax[0].set_title("input (skimage astronaut)")
    ax[1].imshow(overlay(rgb, r.saliency))
    ax[1].set_title("MS-ROI map (shipped model)")
    ax[2].imshow(dec_plain[crop])
    ax[2].set_title(f"plain JPEG Q30: {plain.tell()} B, face PSNR {psnr(dec_plain):.2f} dB")
    ax[3].imshow(dec_sem[crop])
    ax[3].set_title(f"semantic JPEG: {r.size} B, face PSNR {psnr(dec_sem):.2f} dB")
    for a in ax:
        a.axis("off")
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}: {r.summary()}")


if __name__ == "__main__":
    main()
