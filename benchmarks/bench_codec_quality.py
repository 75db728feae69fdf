"""Codec quality, the Table 2.1 protocol of Prakash et al. (DCC 2017; thesis Table 2.1).

Kodak 24: plain Pillow JPEG at Q=50 (4:2:0) vs semantic JPEG ("dct" and "mosaic" modes) size-matched within
+-1%, and jpegli (pyjpegli) at the integer quality whose size is closest. Metrics from libraries: PSNR, SSIM
(scikit-image), PSNR-HVS / PSNR-HVS-M (psnr-hvsm, on BT.601 luma), MS-SSIM and VIFP (sewar, on luma);
PSNR-S = PSNR over the pixels whose MS-ROI value is >= 0.5 (the model's salient region).
PSNR-F (NUS scene, human eye fixations): PSNR with each pixel's squared error weighted by the fixation density
(fixations blurred by a Gaussian of sigma = 2% of the image diagonal), independent of our model.

    python benchmarks/bench_codec_quality.py [--data ../shared/data] [--limit-nus N]
"""
import argparse
import io
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from bench_common import fixation_density
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def plain_jpeg(rgb, q):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=q, subsampling=2)
    return buf.getvalue()


def jpegli_matched(rgb, target):
    import pyjpegli
    best = None
    for q in range(5, 100):
        data = pyjpegli.encode(rgb.tobytes(), rgb.shape[1], rgb.shape[0], q)
        if best is None or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if len(data) > target:
            break
    return best


def decode(data):
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def luma(rgb):
    return (rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])) / 255.0


def psnr(ref, dist, weights=None):
    err = (ref.astype(np.float64) - dist.astype(np.float64)) ** 2
    if err.ndim == 3:
        err = err.mean(axis=2)
    mse = err.mean() if weights is None else (err * weights).sum() / weights.sum()
    return 10 * np.log10(255.0 ** 2 / mse)


def metrics(ref, dist, salient):
    import psnr_hvsm
    from sewar.full_ref import msssim, vifp
    from skimage.metrics import structural_similarity
    y_ref, y_dist = luma(ref), luma(dist)
    hvs, hvsm = psnr_hvsm.psnr_hvs_hvsm(y_ref, y_dist)
    return {
        "PSNR-S": psnr(ref[salient], dist[salient]) if salient.any() else float("nan"),
        "PSNR": psnr(ref, dist),
        "PSNR-HVS": float(hvs), "PSNR-HVS-M": float(hvsm),
        "SSIM": structural_similarity(ref, dist, channel_axis=2, data_range=255),
        "MS-SSIM": float(np.real(msssim(y_ref * 255, y_dist * 255, MAX=255))),
        "VIFP": float(vifp(y_ref * 255, y_dist * 255)),
    }


def kodak_table(data_dir):
    from tqdm import tqdm

    import semantic_jpeg
    from semantic_jpeg.onnx_models import default_model
    model = default_model()
    rows = {k: [] for k in ("JPEG Q50", "semantic dct", "semantic mosaic", "jpegli")}
    sizes = {k: [] for k in rows}
    for path in tqdm(sorted(Path(data_dir).glob("kodim*.png")), desc="kodak"):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        sal = model.msroi_map(rgb)
        salient = sal >= 0.5
        plain = plain_jpeg(rgb, 50)
        outputs = {"JPEG Q50": plain, "jpegli": jpegli_matched(rgb, len(plain))}
        for mode in ("dct", "mosaic"):
            with warnings.catch_warnings():
                warnings.simplefilter("error", semantic_jpeg.RateControlWarning)
                outputs[f"semantic {mode}"] = semantic_jpeg.encode(rgb, saliency=sal, match_jpeg_quality=50, mode=mode)
        for name, data in outputs.items():
            rows[name].append(metrics(rgb, decode(data), salient))
            sizes[name].append(len(data) / len(plain))
    table = {name: {m: float(np.mean([r[m] for r in rs])) for m in rs[0]} for name, rs in rows.items()}
    for name in table:
        table[name]["size vs Q50"] = float(np.mean(sizes[name]))
        table[name]["max size deviation"] = float(np.max(np.abs(np.array(sizes[name]) - 1)))
    return table


def nus_psnr_f(data_dir, limit):
    import csv

    from tqdm import tqdm

    import semantic_jpeg
    from semantic_jpeg.onnx_models import default_model
    model = default_model()
    fixations = {}
    with open(Path(data_dir) / "fixations.csv") as f:
        for row in csv.DictReader(f):
            fixations.setdefault(row["image"], []).append((float(row["y"]), float(row["x"])))
    names = sorted(fixations)[:limit]
    scores = {k: [] for k in ("JPEG Q50", "semantic dct", "semantic mosaic")}
    for name in tqdm(names, desc="nus psnr-f"):
        rgb = np.asarray(Image.open(Path(data_dir) / "stimuli" / name).convert("RGB"))
        weights = fixation_density(fixations[name], rgb.shape[:2])
        sal = model.msroi_map(rgb)
        outs = {"JPEG Q50": plain_jpeg(rgb, 50)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", semantic_jpeg.RateControlWarning)
            for mode in ("dct", "mosaic"):
                outs[f"semantic {mode}"] = semantic_jpeg.encode(rgb, saliency=sal, match_jpeg_quality=50, mode=mode)
        for k, data in outs.items():
            decoded = decode(data)
            scores[k].append((psnr(rgb, decoded, weights), psnr(rgb, decoded), len(data) / len(outs["JPEG Q50"])))
    return {k: {"PSNR-F": float(np.mean([s[0] for s in v])), "PSNR": float(np.mean([s[1] for s in v])),
                "size vs Q50": float(np.mean([s[2] for s in v])), "images": len(v)} for k, v in scores.items()}


def markdown(table, title):
    cols = list(next(iter(table.values())))
    lines = [f"### {title}", "", "| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in table.items():
        cells = (f"{row[c]:.4f}" if abs(row[c]) < 2 else f"{row[c]:.2f}" for c in cols)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit-nus", type=int, default=None, help="use only the first N NUS scene images")
    args = ap.parse_args(argv)
    t0 = time.time()
    kodak = kodak_table(args.data / "kodak")
    nus = nus_psnr_f(args.data / "saliency" / "nus_scene", args.limit_nus)
    command = "python benchmarks/bench_codec_quality.py " + " ".join(sys.argv[1:])
    report = "\n\n".join([f"Command: `{command.strip()}` ({time.time() - t0:.0f} s)",
                          markdown(kodak, "Kodak 24, size-matched to Pillow JPEG Q50 4:2:0 (paper Table 2.1)"),
                          markdown(nus, "NUS scene: PSNR-F (weighted by human fixation density)")])
    print(report)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "codec_quality.md").write_text(report + "\n")
    (RESULTS / "codec_quality.json").write_text(json.dumps({"command": command, "kodak": kodak, "nus": nus}, indent=2))


if __name__ == "__main__":
    main()
