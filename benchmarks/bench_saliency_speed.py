"""Speed of the shipped saliency maps on CPU (onnxruntime, fixed thread count).

    python benchmarks/bench_saliency_speed.py [--threads 2] [--repeats 15]

Measures, on a 1920x1080 photo: MS-ROI / Aug-MSROI (n=5) / R-CAM maps at the default working size, MS-ROI at
other working sizes, and the network alone; batch throughput at 224x224; and, as a baseline measured in the
same run, Pillow's JPEG encode of the same frame at Q50. Results: benchmarks/results/saliency_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from semantic_jpeg.onnx_models import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320, 448, 640])
    args = parser.parse_args(argv)
    model = load_model(intra_op_num_threads=args.threads)
    frame = np.asarray(Image.fromarray(data.astronaut()).resize((1920, 1080), Image.BICUBIC))
    default_size = model.defaults["working_size"]
    rows = {}
    rows["baseline: Pillow JPEG encode Q50 1080p"] = median_ms(
        lambda: Image.fromarray(frame).save(io.BytesIO(), "JPEG", quality=50), args.repeats)
    rows[f"MS-ROI map 1080p @{default_size}"] = median_ms(lambda: model.msroi_map(frame), args.repeats)
    rows[f"Aug-MSROI map n=5 1080p @{default_size}"] = median_ms(lambda: model.aug_msroi_map(frame, n=5, seed=0),
                                                                args.repeats)
    rows[f"R-CAM map 1080p @{default_size}"] = median_ms(lambda: model.rcam_map(frame), args.repeats)
    batch, _ = model.preprocess(frame)
    rows[f"network only (1, 3, {batch.shape[2]}, {batch.shape[3]})"] = median_ms(lambda: model.forward(batch),
                                                                               args.repeats)
    for size in args.sizes:
        if size != default_size:
            rows[f"MS-ROI map 1080p @{size}"] = median_ms(lambda: model.msroi_map(frame, working_size=size),
                                                          args.repeats)
    throughput = {}
    for n in (1, 8, 32):
        batch = np.zeros((n, 3, 224, 224), np.float32)
        throughput[n] = n / (median_ms(lambda: model.forward(batch), max(3, args.repeats // 3)) / 1000)
    msroi = rows[f"MS-ROI map 1080p @{default_size}"]
    ratios = {"Aug-MSROI / MS-ROI": rows[f"Aug-MSROI map n=5 1080p @{default_size}"] / msroi,
              "MS-ROI / Pillow JPEG encode": msroi / rows["baseline: Pillow JPEG encode Q50 1080p"]}
    command = "python benchmarks/bench_saliency_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip(), "threads": args.threads, "providers": model.providers,
              "median_ms": rows, "batch_224_images_per_s": throughput, "ratios": ratios}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "saliency_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Saliency map speed (CPU, {args.threads} threads, {model.providers[0]})", "",
             f"Command: `{result['command']}`", "", "| what | median ms |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in rows.items()]
    lines += ["", "| batch at 224x224 | images/s |", "|---|---|"]
    lines += [f"| {n} | {ips:.1f} |" for n, ips in throughput.items()]
    lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    (RESULTS / "saliency_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
