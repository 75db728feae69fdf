"""Throughput of the default map (the gaze model) one image at a time and in batches, on the CPU and, where
onnxruntime can use CUDA, on the GPU: what ``semantic_jpeg.ray.SaliencyMapper`` gains from a GPU.

Measured in one run over the Kodak photos (``--data``; 24 images, 768x512 and 512x768, so two batch shapes):

- CPU, one image at a time (``GazeModel.saliency_map``), onnxruntime on 1 thread and on its default threads;
- CPU and (when available) CUDA, ``GazeModel.saliency_maps`` in batches of ``--batch-sizes``;
- for CUDA, the largest difference of its maps from the CPU's (float rounding of different kernels).

Each time is the best of ``--repeats`` passes over all images, after one warm-up pass. The maps include the
resizing to the network's inputs and the post-processing back to the image's size (both on the CPU). Writes
``benchmarks/results/gpu_maps.{md,json}`` (``--out``)::

    python benchmarks/bench_gpu_maps.py [--data ../shared/data/kodak] [--batch-sizes 1 8 24] [--repeats 3]

Without onnxruntime-gpu and a GPU the CUDA rows say so and the CPU rows are still measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def timed(fn, repeats):
    fn()  # warm-up: sessions, arenas, kernels for each input shape
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "kodak"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 24])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "gpu_maps"), help="results path without suffix")
    args = parser.parse_args(argv)

    import onnxruntime

    from semantic_jpeg.onnx_models.gaze_model import load_gaze_model

    paths = sorted(Path(args.data).glob("*.png"))
    if not paths:
        raise SystemExit(f"no PNG files in {args.data}")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    n = len(images)
    rows = []

    def add(device, how, seconds, **extra):
        rows.append({"device": device, "how": how, "seconds": round(seconds, 4),
                     "images_per_s": round(n / seconds, 2), **extra})
        print(rows[-1], flush=True)

    cpu_reference = None
    for threads in (1, None):
        model = load_gaze_model(providers=["CPUExecutionProvider"], intra_op_num_threads=threads)
        label = f"CPU, onnxruntime {threads or 'default'} thread{'s' if threads != 1 else ''}"
        add(label, "one at a time", timed(lambda m=model: [m.saliency_map(i) for i in images], args.repeats))
        for size in args.batch_sizes:
            add(label, f"batches of {size}", timed(lambda m=model, s=size: m.saliency_maps(images, batch_size=s),
                                                   args.repeats))
        if cpu_reference is None:
            cpu_reference = model.saliency_maps(images)

    cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    cuda_note = None
    if cuda:
        model = load_gaze_model(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if model.providers[0] != "CUDAExecutionProvider":
            cuda, cuda_note = False, f"onnxruntime could not enable CUDA (providers: {model.providers})"
        else:
            diff = max(float(np.abs(a - b).max()) for a, b in zip(model.saliency_maps(images), cpu_reference))
            add("CUDA", "one at a time", timed(lambda: [model.saliency_map(i) for i in images], args.repeats),
                max_abs_diff_vs_cpu=diff)
            for size in args.batch_sizes:
                add("CUDA", f"batches of {size}", timed(lambda s=size: model.saliency_maps(images, batch_size=s),
                                                        args.repeats), max_abs_diff_vs_cpu=diff)
    else:
        cuda_note = ("not measured: onnxruntime here has no CUDA provider "
                     f"({onnxruntime.get_available_providers()}; onnxruntime-gpu and a GPU are needed)")

    result = {"images": n, "data": str(args.data), "repeats": args.repeats, "cpus": os.cpu_count(),
              "machine": platform.machine(), "onnxruntime": onnxruntime.__version__, "rows": rows,
              "cuda_note": cuda_note,
              "command": "python benchmarks/bench_gpu_maps.py " + " ".join(argv or sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Default map (gaze model): one at a time and in batches, CPU and CUDA", "",
             f"`{result['command'].strip()}`: {n} Kodak photos (two input shapes), best of {args.repeats} passes "
             f"after a warm-up, {os.cpu_count()} CPUs, onnxruntime {onnxruntime.__version__}. A map includes "
             "the resizing to the network's inputs and the post-processing to the image's size (CPU).", "",
             "| device | how | s for all | images/s | max abs difference from the CPU maps |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        diff = f"{r['max_abs_diff_vs_cpu']:.2e}" if "max_abs_diff_vs_cpu" in r else ""
        lines.append(f"| {r['device']} | {r['how']} | {r['seconds']:.3f} | {r['images_per_s']:.1f} | {diff} |")
    if cuda_note:
        lines += ["", f"CUDA: {cuda_note}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
