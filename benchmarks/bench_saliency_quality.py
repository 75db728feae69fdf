"""Map quality against human eye fixations (NUS scene saliency set): AUC-Judd, NSS and CC of MS-ROI,
Aug-MSROI and R-CAM at several working resolutions and coarse groupings, and of a centre-bias baseline.

    python benchmarks/bench_saliency_quality.py [--data PATH] [--limit N]

Ground truth: each image's fixations of all subjects; CC compares with the fixation density (fixations blurred
by a Gaussian of sigma = 3% of the longer image side). Results: benchmarks/results/saliency_quality.{json,md}.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from semantic_jpeg.onnx_models import load_model
from semantic_jpeg.onnx_models.image_input import resize_map

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/saliency/nus_scene"
RESULTS = Path(__file__).resolve().parent / "results"


def auc_judd(saliency: np.ndarray, fixated: np.ndarray) -> float:
    """AUC-Judd: thresholds at the map values of fixated pixels; TPR over fixations, FPR over all pixels."""
    values = saliency.ravel() + np.random.default_rng(0).random(saliency.size) * 1e-7  # break ties
    fix_values = np.sort(values[fixated.ravel()])[::-1]
    n_fix, n_pix = len(fix_values), values.size
    all_sorted = np.sort(values)[::-1]
    above = np.searchsorted(-all_sorted, -fix_values, side="right")  # pixels >= each threshold
    tpr = np.concatenate([[0], np.arange(1, n_fix + 1) / n_fix, [1]])
    fpr = np.concatenate([[0], (above - np.arange(1, n_fix + 1)) / (n_pix - n_fix), [1]])
    return float(np.trapezoid(tpr, fpr))


def nss(saliency: np.ndarray, fixated: np.ndarray) -> float:
    std = saliency.std()
    return float(((saliency - saliency.mean()) / std)[fixated].mean()) if std > 0 else 0.0


def cc(saliency: np.ndarray, density: np.ndarray) -> float:
    a, b = saliency - saliency.mean(), density - density.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def centre_bias(height: int, width: int) -> np.ndarray:
    y = (np.arange(height) + 0.5) / height - 0.5
    x = (np.arange(width) + 0.5) / width - 0.5
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * 0.25 ** 2)).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--name", default="saliency_quality", help="file name stem of the results")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320, 448])
    parser.add_argument("--groupings", nargs="+", default=["fine", "wordnet_le16", "wordnet_le32", "wordnet_le64"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    model = load_model(intra_op_num_threads=args.threads)
    d = model.defaults
    fixations = defaultdict(list)
    with open(args.data / "fixations.csv") as handle:
        for row in csv.DictReader(handle):
            fixations[row["image"]].append((float(row["y"]), float(row["x"])))
    with open(args.data / "images.csv") as handle:
        names = [row["image"] for row in csv.DictReader(handle)][:args.limit]
    scores = defaultdict(lambda: defaultdict(list))
    start = time.time()
    for name in tqdm(names, desc="NUS images"):
        image = np.asarray(Image.open(args.data / "stimuli" / name).convert("RGB"))
        height, width = image.shape[:2]
        fixated = np.zeros((height, width), bool)
        points = np.array(fixations[name])
        rows, cols = np.clip(points[:, 0].astype(int), 0, height - 1), np.clip(points[:, 1].astype(int), 0, width - 1)
        fixated[rows, cols] = True
        density = gaussian_filter(fixated.astype(np.float32), 0.03 * max(height, width))
        maps = {"centre_bias": centre_bias(height, width)}
        for size in args.sizes:
            batch, _ = model.preprocess(image, working_size=size)
            logits, features = model.forward(batch)
            aug_logits, aug_features = model.aug_msroi_batch(batch, d["aug_n"], np.random.default_rng(0),
                                                             d["input_noise"], d["activation_noise"])
            maps[f"rcam@{size}"] = model.rcam_from_outputs(logits[0], features[0], d["top_k"])
            for grouping in args.groupings:
                maps[f"msroi[{grouping}]@{size}"] = model.msroi_from_outputs(logits[0], features[0], grouping,
                                                                               d["top_k"])
                aug = [model.msroi_from_outputs(aug_logits[i], aug_features[i], grouping, d["top_k"])
                       for i in range(d["aug_n"])]
                maps[f"aug_msroi[{grouping}]@{size}"] = np.mean(aug, axis=0)
        for method, low_res in maps.items():
            saliency = resize_map(low_res, height, width)
            scores[method]["auc_judd"].append(auc_judd(saliency, fixated))
            scores[method]["nss"].append(nss(saliency, fixated))
            scores[method]["cc"].append(cc(saliency, density))
    summary = {method: {metric: float(np.mean(values)) for metric, values in metrics.items()}
               for method, metrics in scores.items()}
    command = "python benchmarks/bench_saliency_quality.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip(), "images": len(names), "seconds": round(time.time() - start, 1),
              "aug_settings": {k: d[k] for k in ("aug_n", "input_noise", "activation_noise", "top_k")},
              "density_sigma": "0.03 * longer side", "scores": summary}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    base = summary["centre_bias"]
    lines = [f"# Saliency map quality on NUS scene ({len(names)} images, human fixations)", "",
             f"Command: `{result['command']}`", "",
             "| method | AUC-Judd | NSS | CC | CC / centre-bias CC |", "|---|---|---|---|---|"]
    for method, s in sorted(summary.items(), key=lambda item: -item[1]["cc"]):
        lines.append(f"| {method} | {s['auc_judd']:.3f} | {s['nss']:.3f} | {s['cc']:.3f} | "
                     f"{s['cc'] / base['cc']:.2f} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
