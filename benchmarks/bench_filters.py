"""Speed of the purification filters against their baselines, measured in one run (issue 4).

At 224x224 and 1920x1080 (real photos: an ImageNet sample and a Kodak image resized), median of --runs of a
first call (right after another library's call) and of a repeat call (right after the same call):
ours ("pd+rcam+dwt" with a precomputed R-CAM map, so without the map inference; and its two steps alone),
scikit-image's denoise_wavelet alone (the authors' call: BayesShrink, soft, db1, YCbCr, sigma=0.04), the
original pipeline (the authors' Python-loop targeted deflection + scikit-image denoising, written below as the
baseline), and ART's JpegCompression, SpatialSmoothing, FeatureSqueezing and TotalVarMin.

    nice python benchmarks/bench_filters.py            # writes benchmarks/results/filters_speed.{json,md}
"""
from __future__ import annotations

import os

# One thread per call for every method, as the report states: thread pools of BLAS/OpenMP libraries would
# otherwise spin on the second core after a baseline's call and slow the next method down.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from semantic_jpeg.defense_filters import pixel_deflection, preset, wavelet_denoise  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared/data"
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {"224x224": (224, 224), "1920x1080": (1080, 1920)}


def original_pixel_deflection(img, rcam_prob, deflections, window):
    """The authors' released loop (github.com/iamaaditya/pixel-deflection, methods.py), kept as written:
    per channel, rejection sampling of the offset, in-place update."""
    img = np.copy(img)
    H, W, C = img.shape
    while deflections > 0:
        for c in range(C):
            x, y = random.randint(0, H - 1), random.randint(0, W - 1)
            if random.uniform(0, 1) < rcam_prob[x, y]:
                continue
            while True:
                a, b = random.randint(-1 * window, window), random.randint(-1 * window, window)
                if x + a < H and x + a > 0 and y + b < W and y + b > 0:
                    break
            img[x, y, c] = img[x + a, y + b, c]
        deflections -= 1
    return img


def original_pipeline(rgb_uint8, rcam):
    from skimage.restoration import denoise_wavelet

    img = original_pixel_deflection(rgb_uint8, rcam, 100, 10)
    out = denoise_wavelet(img / 255.0, sigma=0.04, mode="soft", channel_axis=-1, convert2ycbcr=True,
                          method="BayesShrink")
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def load_images(data: Path) -> dict[str, np.ndarray]:
    small = Image.open(sorted((data / "imagenet_samples").glob("*.JPEG"))[0]).convert("RGB")
    large = Image.open(data / "kodak" / "kodim23.png").convert("RGB")
    return {"224x224": np.asarray(small.resize((224, 224), Image.BICUBIC)),
            "1920x1080": np.asarray(large.resize((1920, 1080), Image.BICUBIC))}


def rcam_for(rgb: np.ndarray) -> np.ndarray:
    from semantic_jpeg.onnx_models import default_model

    return default_model().rcam_map(rgb, color_order="RGB")


def candidates(rgb: np.ndarray, rcam: np.ndarray):
    from art.defences.preprocessor import FeatureSqueezing, JpegCompression, SpatialSmoothing, TotalVarMin
    from skimage.restoration import denoise_wavelet

    batch = rgb[None].astype(np.float32) / 255
    ours = preset("pd+rcam+dwt")
    generator = np.random.default_rng(0)
    art = {
        "ART JpegCompression (Q=50)": JpegCompression(clip_values=(0, 1), quality=50),
        "ART SpatialSmoothing (3x3)": SpatialSmoothing(window_size=3),
        "ART FeatureSqueezing (4 bits)": FeatureSqueezing(clip_values=(0, 1), bit_depth=4),
        "ART TotalVarMin (defaults)": TotalVarMin(clip_values=(0, 1)),
    }
    return {
        "ours: pd+rcam+dwt (map given)": lambda: ours(rgb, rng=generator, saliency=rcam),
        "ours: pixel deflection (R-CAM)": lambda: pixel_deflection(rgb, 100, 10, saliency=rcam, rng=generator),
        "ours: wavelet denoise": lambda: wavelet_denoise(rgb, 0.04),
        "skimage denoise_wavelet": lambda: denoise_wavelet(rgb / 255.0, sigma=0.04, mode="soft", channel_axis=-1,
                                                           convert2ycbcr=True, method="BayesShrink"),
        "original pipeline (Python PD + skimage)": lambda: original_pipeline(rgb, rcam),
        **{name: (lambda d=d: d(batch)) for name, d in art.items()},
    }


def median_ms(funcs: dict, runs: int, slow_runs: int, seed: int = 0) -> dict:
    """Median wall time per function, of a first call and of a repeat call.

    Each round calls every method twice in a row, the methods in a new random order each round (so that load
    spikes on the shared machine hit every method alike and no method always follows the same one). The first
    call comes right after a different library's call, with that library's code and data in the caches: what
    one call costs inside a larger pipeline (e.g. between two classifier runs). The repeat call comes right
    after the same call: what each image costs in a loop over many images, the usual way to time a function.
    Methods with "TotalVarMin" in their name get ``slow_runs`` rounds."""
    times = {name: ([], []) for name in funcs}
    for func in funcs.values():
        func()  # warm-up
    order = random.Random(seed)
    for run in tqdm(range(runs), leave=False):
        for name in order.sample(list(funcs), len(funcs)):
            if "TotalVarMin" in name and run >= slow_runs:
                continue
            for call in times[name]:
                start = time.perf_counter()
                funcs[name]()
                call.append(time.perf_counter() - start)
    return {name: {"first_call_ms": float(np.median(first) * 1e3), "repeat_call_ms": float(np.median(repeat) * 1e3),
                   "runs": len(first)} for name, (first, repeat) in times.items()}


TARGETS = {"skimage denoise_wavelet": 2.0, "original pipeline (Python PD + skimage)": 20.0}  # issue 4: ours >= x faster
OURS = "ours: pd+rcam+dwt (map given)"
CALLS = {"first_call_ms": "first call", "repeat_call_ms": "repeat call"}


def report(results: dict, command: str) -> str:
    """The Markdown report: one table per call kind, then the ratios against the issue's targets."""
    lines = [f"# Purification filter speed (median ms; `{command}`)", "",
             f"CPU: {platform.processor() or platform.machine()}, shared 2-core VM; one process, one thread per call.",
             "Each round calls every method twice in a row, methods in a new random order each round: 'first call'",
             "comes right after another library's call, 'repeat call' right after the same call.", ""]
    for key, label in CALLS.items():
        lines += [f"## {label}", "",
                  "| method | " + " | ".join(f"{s} ms | vs ours" for s in SIZES) + " | runs per size |",
                  "|---|" + "---:|---:|" * len(SIZES) + "---:|"]
        for name in results["224x224"]:
            cells = []
            for size in SIZES:
                value = results[size][name][key]
                cells.append(f"{value:.2f} | {value / results[size][OURS][key]:.1f}x")
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {results['224x224'][name]['runs']} |")
        lines.append("")
    lines += ["'vs ours': the method's time divided by ours (pd+rcam+dwt), so > 1 means ours is faster.", "",
              "## Targets (ours at least this many times faster)", "",
              "| baseline | target | " + " | ".join(f"{s} {label}" for s in SIZES for label in CALLS.values()) + " |",
              "|---|---:|" + "---:|" * (len(SIZES) * len(CALLS))]
    for name, target in TARGETS.items():
        cells = [results[size][name][key] / results[size][OURS][key] for size in SIZES for key in CALLS]
        lines.append(f"| {name} | {target:g}x | " + " | ".join(
            f"{ratio:.1f}x {'met' if ratio >= target else 'NOT met'}" for ratio in cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--slow-runs", type=int, default=10,
                        help="runs for ART TotalVarMin, which takes seconds per image")
    parser.add_argument("--out", type=Path, default=RESULTS / "filters_speed")
    args = parser.parse_args(argv)
    random.seed(0)
    images = load_images(args.data)
    results = {}
    for size, rgb in images.items():
        rcam = rcam_for(rgb)  # map inference is not timed
        results[size] = median_ms(candidates(rgb, rcam), args.runs, args.slow_runs)
    command = "nice python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    text = report(results, command)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
