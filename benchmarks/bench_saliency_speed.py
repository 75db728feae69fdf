"""Speed of the shipped saliency maps (onnxruntime, fixed thread count; CPU unless --providers says otherwise).

    python benchmarks/bench_saliency_speed.py [--threads 2] [--repeats 15] [--providers P ...] [--name NAME]

Measures, on a 1920x1080 photo: MS-ROI / Aug-MSROI (n=5) / R-CAM maps at the default working size, MS-ROI at
other working sizes, and the network alone; batch throughput at 224x224; 1080p MS-ROI maps per second with
1, 2 and 4 caller threads sharing the one session; and, as a baseline measured in the same run, Pillow's JPEG
encode of the same frame at Q50. Ratios are medians of per-round ratios, both calls timed in each round in
alternating order. On a GPU machine with onnxruntime-gpu:
``--providers CUDAExecutionProvider CPUExecutionProvider --name saliency_speed_cuda``.
Results: benchmarks/results/NAME.{json,md} (default saliency_speed).
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
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


def paired_ratio(numerator, denominator, rounds: int) -> float:
    """Median over rounds of time(numerator) / time(denominator), both timed in each round in alternating
    order, so that the machine's drift between rounds cancels."""
    numerator(), denominator()  # warm-up
    ratios = []
    for round_index in range(rounds):
        elapsed = {}
        for name, function in (("n", numerator), ("d", denominator))[::1 if round_index % 2 else -1]:
            start = time.perf_counter()
            function()
            elapsed[name] = time.perf_counter() - start
        ratios.append(elapsed["n"] / elapsed["d"])
    return statistics.median(ratios)


def maps_per_second(model, frame, callers: int, rounds: int = 3) -> float:
    """1080p MS-ROI maps per second with ``callers`` threads calling one shared model (median of rounds)."""
    count = 8 * callers
    rates = []
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(lambda _: model.msroi_map(frame), range(callers)))  # warm-up
        for _ in range(rounds):
            start = time.perf_counter()
            list(pool.map(lambda _: model.msroi_map(frame), range(count)))
            rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320, 448, 640])
    parser.add_argument("--providers", nargs="+", default=None, help="onnxruntime providers (default: the "
                        "package's choice, CUDA then CPU with onnxruntime-gpu, else CPU)")
    parser.add_argument("--name", default="saliency_speed", help="file name stem of the results")
    args = parser.parse_args(argv)
    model = load_model(providers=args.providers, intra_op_num_threads=args.threads)
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
            rows[f"MS-ROI map 1080p @{size}"] = median_ms(lambda size=size: model.msroi_map(frame, working_size=size),
                                                          args.repeats)
    throughput = {}
    for n in (1, 8, 32):
        batch = np.zeros((n, 3, 224, 224), np.float32)
        throughput[n] = n / (median_ms(lambda batch=batch: model.forward(batch), max(3, args.repeats // 3)) / 1000)
    callers = {n: maps_per_second(model, frame, n) for n in (1, 2, 4)}
    rounds = 2 * args.repeats + 1
    ratios = {"Aug-MSROI / MS-ROI": paired_ratio(lambda: model.aug_msroi_map(frame, n=5, seed=0),
                                                 lambda: model.msroi_map(frame), rounds),
              "MS-ROI / Pillow JPEG encode": paired_ratio(
                  lambda: model.msroi_map(frame),
                  lambda: Image.fromarray(frame).save(io.BytesIO(), "JPEG", quality=50), rounds)}
    command = "python benchmarks/bench_saliency_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip(), "threads": args.threads, "providers": model.providers,
              "median_ms": rows, "batch_224_images_per_s": throughput, "msroi_1080p_maps_per_s": callers,
              "ratios": ratios}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Saliency map speed ({model.providers[0]}, {args.threads} onnxruntime threads)", "",
             f"Command: `{result['command']}`", "", "| what | median ms |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in rows.items()]
    lines += ["", "| batch at 224x224 | images/s |", "|---|---|"]
    lines += [f"| {n} | {ips:.1f} |" for n, ips in throughput.items()]
    lines += ["", "| caller threads, one session | 1080p MS-ROI maps/s |", "|---|---|"]
    lines += [f"| {n} | {rate:.1f} |" for n, rate in callers.items()]
    lines += ["", f"| ratio (median of {rounds} paired rounds) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
