"""Fixation prediction on NUS scene (never trained on): the gaze model vs centre bias, MS-ROI, Aug-MSROI and a
leave-one-observer-out gold standard; plus the speed of a 1920x1080 gaze map vs one Pillow Q50 encode.

    python benchmarks/bench_gaze.py [--data ../shared/data/saliency/nus_scene] [--limit N] [--model PATH]

Metrics (semantic_jpeg.evaluation.saliency_metrics): AUC-Judd, shuffled AUC (negatives: fixations of all other
NUS images), NSS, CC and KLD against the empirical fixation density (all observers, Gaussian sigma = 3% of the
longer side), log-likelihood and information gain (IG) over the centre-bias model in bits per fixation.
Centre bias: kernel density of the fixations of all OTHER NUS images in normalised image coordinates (leave one
image out). Gold standard: per observer, a kernel density of the other observers' fixations mixed 50/50 with the
centre bias, scored on the left-out observer (AUC, sAUC, NSS, LL, IG); its CC and KLD compare the densities of
two random halves of the observers (split-half). Results: benchmarks/results/gaze_nus.{json,md}.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from semantic_jpeg.evaluation import saliency_metrics as sm
from semantic_jpeg.onnx_models import gaze_model as gaze_model_module
from semantic_jpeg.onnx_models import load_model
from semantic_jpeg.onnx_models.gaze_model import load_gaze_model
from semantic_jpeg.onnx_models.image_input import resize_map
from semantic_jpeg.training.gaze_data import read_dataset  # csv reading only (no torch use)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared/data/saliency/nus_scene"
KODAK = ROOT.parent / "shared/data/kodak"
RESULTS = ROOT / "benchmarks/results"
CB_BINS = 64
METRICS = ("auc_judd", "sauc", "nss", "cc", "kld", "ll_bits", "ig_bits")


def centre_bias_histogram(images) -> tuple[np.ndarray, list[np.ndarray]]:
    """Sum over images (each image weight 1) of its fixations' histogram in normalised coordinates."""
    per_image = []
    for image in images:
        hist = np.zeros((CB_BINS, CB_BINS))
        col = np.minimum((image.xy[:, 0] / image.width * CB_BINS).astype(int), CB_BINS - 1)
        row = np.minimum((image.xy[:, 1] / image.height * CB_BINS).astype(int), CB_BINS - 1)
        np.add.at(hist, (row, col), 1.0 / len(image.xy))
        per_image.append(hist)
    return np.sum(per_image, axis=0), per_image


def centre_bias_log_density(total, own, height, width, sigma_bins=3.0) -> np.ndarray:
    """Leave-one-image-out centre-bias log-density at (height, width), 1% uniform mixed in."""
    hist = gaussian_filter(total - own, sigma_bins, mode="nearest") + 1e-6
    density = resize_map((hist / hist.sum()).astype(np.float32), height, width).astype(np.float64)
    return sm.log_density_from_map(np.maximum(density, 0), floor=0.01)


def scores_for(saliency, log_density, image, other_xy, reference, cb_log) -> dict:
    out = {"auc_judd": sm.auc_judd(saliency, image.xy), "sauc": sm.shuffled_auc(saliency, image.xy, other_xy),
           "nss": sm.nss(saliency, image.xy), "cc": sm.cc(saliency, reference), "kld": sm.kld(saliency, reference)}
    if log_density is not None:
        out["ll_bits"] = sm.log_likelihood(log_density, image.xy)
        out["ig_bits"] = sm.information_gain(log_density, cb_log, image.xy)
    return out


def gold_standard(image, cb_log, other_xy, sigma, rng) -> dict:
    """Leave-one-observer-out scores (mean over observers) + split-half CC / KLD."""
    shape = (image.height, image.width)
    results = []
    for subject in np.unique(image.subjects):
        mine, others = image.xy[image.subjects == subject], image.xy[image.subjects != subject]
        log_p = sm.gold_standard_log_density(others, shape, sigma, cb_log, mix=0.5)
        saliency = np.exp(log_p)
        results.append({"auc_judd": sm.auc_judd(saliency, mine), "sauc": sm.shuffled_auc(saliency, mine, other_xy),
                        "nss": sm.nss(saliency, mine), "ll_bits": sm.log_likelihood(log_p, mine),
                        "ig_bits": sm.information_gain(log_p, cb_log, mine)})
    out = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
    subjects = rng.permutation(np.unique(image.subjects))
    half = np.isin(image.subjects, subjects[:len(subjects) // 2])
    a = sm.fixation_density(image.xy[half], shape, sigma)
    b = sm.fixation_density(image.xy[~half], shape, sigma)
    out["cc"], out["kld"] = sm.cc(a, b), sm.kld(a, b)
    return out


def speed(gaze, cam, repeats: int) -> dict:
    """Median seconds of a 1920x1080 gaze map, MS-ROI map and Pillow Q50 encode, measured in this run."""
    source = sorted(KODAK.glob("*.png"))[:1]
    if source:
        frame = Image.open(source[0]).convert("RGB").resize((1920, 1080), Image.BICUBIC)
    else:
        frame = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8))
    rgb = np.asarray(frame)

    def median_seconds(fn):
        fn()
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return float(np.median(times))

    encode = median_seconds(lambda: frame.save(io.BytesIO(), "JPEG", quality=50))
    gaze_s = median_seconds(lambda: gaze.saliency_map(rgb))
    msroi_s = median_seconds(lambda: cam.msroi_map(rgb))
    return {"image": "1920x1080 (" + (source[0].name if source else "random") + " resized)",
            "pillow_q50_encode_s": encode, "gaze_map_s": gaze_s, "msroi_map_s": msroi_s,
            "gaze_over_encode": gaze_s / encode, "msroi_over_encode": msroi_s / encode, "repeats": repeats}


def figure(images, gaze, cam, path: Path, names) -> None:
    """Image, human fixation density, gaze map and MS-ROI map for a few NUS images (one row each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [im for im in images if im.name in names] or images[:4]
    fig, axes = plt.subplots(len(chosen), 4, figsize=(12, 2.9 * len(chosen)), squeeze=False)
    for row, image in zip(axes, chosen):
        rgb = np.asarray(Image.open(image.path).convert("RGB"))
        shape = rgb.shape[:2]
        panels = [("image + fixations", rgb, None),
                  ("human fixation density", sm.fixation_density(image.xy, shape, 0.03 * max(shape)), "magma"),
                  ("gaze (this model)", gaze.saliency_map(rgb), "magma"), ("MS-ROI", cam.msroi_map(rgb), "magma")]
        for ax, (title, data, cmap) in zip(row, panels):
            ax.imshow(data, cmap=cmap)
            if cmap is None:
                ax.scatter(image.xy[:, 0], image.xy[:, 1], s=4, c="cyan", linewidths=0)
            ax.set_title(f"{title}" if title != "image + fixations" else f"{image.name}: {title}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="NUS scene folder (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=None, help="first N images only (default: all)")
    parser.add_argument("--model", type=Path, default=None, help="gaze model manifest (default: the shipped one)")
    parser.add_argument("--name", default="gaze_nus", help="results file stem (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads (default: %(default)s)")
    parser.add_argument("--speed-repeats", type=int, default=10, help="timed runs per method (0: skip)")
    parser.add_argument("--record-manifest", action="store_true",
                        help="write the gaze row into the model manifest's metrics (after retraining)")
    parser.add_argument("--no-cam", action="store_true", help="skip MS-ROI / Aug-MSROI (model selection runs)")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/img/gaze_vs_msroi.png",
                        help="figure of maps vs fixations ('' to skip; default: %(default)s)")
    parser.add_argument("--figure-images", nargs="+", default=["016.jpg", "020.jpg", "001.jpg", "005.jpg"],
                        help="NUS images shown in the figure (default: %(default)s)")
    args = parser.parse_args(argv)
    gaze = load_gaze_model(args.model, intra_op_num_threads=args.threads)
    cam = load_model(intra_op_num_threads=args.threads)
    images = read_dataset(args.data, limit=args.limit)
    total, own = centre_bias_histogram(images)
    normalised = [np.column_stack([im.xy[:, 0] / im.width, im.xy[:, 1] / im.height]) for im in images]
    rng = np.random.default_rng(0)
    methods = ["gaze", "gaze_raw", "centre_bias"] + ([] if args.no_cam else ["msroi", "aug_msroi"]) + ["gold_standard"]
    scores = {m: {k: [] for k in METRICS} for m in methods}
    began = time.time()
    for i, image in enumerate(tqdm(images, desc="NUS images")):
        shape = (image.height, image.width)
        sigma = 0.03 * max(shape)
        others = np.concatenate(normalised[:i] + normalised[i + 1:])
        others = others[rng.choice(len(others), size=min(len(others), 5000), replace=False)]
        other_xy = others * np.array([image.width, image.height])
        reference = sm.fixation_density(image.xy, shape, sigma)
        cb_log = centre_bias_log_density(total, own[i], *shape)
        rgb = np.asarray(Image.open(image.path).convert("RGB"))
        log_p = gaze.log_density(rgb).astype(np.float64)
        results = {"gaze": scores_for(gaze.saliency_map(rgb), log_p, image, other_xy, reference, cb_log),
                   "gaze_raw": scores_for(gaze.saliency_map(rgb, blur=0), log_p, image, other_xy, reference, cb_log),
                   "centre_bias": scores_for(np.exp(cb_log), cb_log, image, other_xy, reference, cb_log),
                   "gold_standard": gold_standard(image, cb_log, other_xy, sigma, rng)}
        if not args.no_cam:
            results["msroi"] = scores_for(cam.msroi_map(rgb), None, image, other_xy, reference, cb_log)
            results["aug_msroi"] = scores_for(cam.aug_msroi_map(rgb, seed=0), None, image, other_xy, reference,
                                              cb_log)
        for method, values in results.items():
            for key, value in values.items():
                scores[method][key].append(value)
    summary = {m: {k: (float(np.mean(v)) if v else None) for k, v in s.items()} for m, s in scores.items()}
    command = "python benchmarks/bench_gaze.py " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command.strip(), "images": len(images), "seconds": round(time.time() - began, 1),
              "data": str(args.data.name), "model": gaze.name, "model_sha256": gaze.manifest["sha256"],
              "density_sigma": "0.03 * longer side", "scores": summary,
              "targets": {"auc_judd": 0.84, "cc": 0.62, "nss": 1.6, "ig_bits": 0.0}}
    if str(args.figure) not in ("", "."):
        figure(images, gaze, cam, args.figure, args.figure_images)
    if args.speed_repeats:
        result["speed"] = speed(gaze, cam, args.speed_repeats)
    if args.record_manifest:
        record_in_manifest(result, args.model or Path(gaze_model_module.PACKAGE_DIR) / "efficientnet_lite0_gaze.json")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, RESULTS / f"{args.name}.md")
    print((RESULTS / f"{args.name}.md").read_text())
    return 0


def record_in_manifest(result, path: Path) -> None:
    """Store the NUS scores of the gaze model and of the centre bias in the manifest (the ONNX sha256 is
    unchanged: the manifest's own bytes are not hashed)."""
    manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    scores = result["scores"]
    manifest["metrics"] = {"nus_scene": {**{k: round(v, 4) for k, v in scores["gaze"].items() if v is not None},
                                         "images": result["images"], "command": result["command"],
                                         "centre_bias": {k: round(v, 4) for k, v in scores["centre_bias"].items()
                                                         if v is not None}}}
    Path(path).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_markdown(result, path) -> None:
    names = {"gaze": "gaze (this model)", "gaze_raw": "gaze, unsmoothed density (blur=0)",
             "centre_bias": "centre bias (other NUS images)", "msroi": "MS-ROI",
             "aug_msroi": "Aug-MSROI", "gold_standard": "gold standard (other observers)"}

    def cell(value, digits=3):
        return "—" if value is None else f"{value:.{digits}f}"

    lines = [f"# Fixation prediction on NUS scene ({result['images']} images, never trained on)", "",
             f"Command: `{result['command']}`; model `{result['model']}` (sha256 {result['model_sha256'][:12]}...).",
             "", "| method | AUC-Judd | sAUC | NSS | CC | KLD | LL (bits/fix) | IG over centre bias (bits/fix) |",
             "|---|---|---|---|---|---|---|---|"]
    for method, s in result["scores"].items():
        lines.append(f"| {names.get(method, method)} | {cell(s['auc_judd'])} | {cell(s['sauc'])} | {cell(s['nss'])} | "
                     f"{cell(s['cc'])} | {cell(s['kld'])} | {cell(s['ll_bits'])} | {cell(s['ig_bits'])} |")
    t = result["targets"]
    lines += ["", f"Targets: AUC-Judd >= {t['auc_judd']}, CC >= {t['cc']}, NSS >= {t['nss']}, IG > {t['ig_bits']}.",
              "", "CC and KLD compare with the fixation density of all observers (Gaussian sigma = 3% of the longer "
              "side); LL and IG are in bits per fixation relative to a uniform density and to the centre bias. "
              "MS-ROI and Aug-MSROI are maps, not densities: no LL/IG. Gold standard: each observer predicted from "
              "the others (kernel density mixed 50/50 with the centre bias); its CC/KLD are split-half (two halves "
              "of the observers against each other), a conservative ceiling."]
    if "speed" in result:
        sp = result["speed"]
        lines += ["", f"Speed ({sp['image']}, median of {sp['repeats']}, same run): gaze map "
                  f"{sp['gaze_map_s'] * 1000:.1f} ms = {sp['gaze_over_encode']:.1f}x one Pillow Q50 encode "
                  f"({sp['pillow_q50_encode_s'] * 1000:.1f} ms); MS-ROI map {sp['msroi_map_s'] * 1000:.1f} ms = "
                  f"{sp['msroi_over_encode']:.1f}x."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
