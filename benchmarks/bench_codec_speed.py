"""Codec speed on a 1920x1080 image (median of --runs runs; ratios against baselines measured in the same run).

Baselines: one plain Pillow JPEG encode (Q50, 4:2:0) and one MS-ROI map of the shipped model.
Stages timed: the block stage, i.e. the semantic work between the map and the final encode ("dct" mode:
cell level assignment + per-block requantisation; "mosaic" mode: level assignment, k encode/decode passes
and the native mosaic); in "dct" mode also its own final encode (native forward DCT + entropy coding, the
work a plain encoder does) against Pillow's; end-to-end encode with the shipped model, and with size
matching to Q50.
Peak memory: tracemalloc peak (numpy and Python allocations; onnxruntime's own arena is not included) of one
size-matched 1080p encode with the map given.

    python benchmarks/bench_codec_speed.py [--runs 15] [--data ../shared/data]
"""
import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def median_ms(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def test_image(data_dir):
    path = Path(data_dir) / "kodak" / "kodim23.png"
    if path.exists():
        return np.asarray(Image.open(path).convert("RGB").resize((1920, 1080), Image.LANCZOS))
    from skimage import data
    return np.asarray(Image.fromarray(data.astronaut()).resize((1920, 1080), Image.LANCZOS))


def peak_mib(fn):
    import tracemalloc
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args(argv)

    import semantic_jpeg
    from semantic_jpeg.codec import encoder
    from semantic_jpeg.onnx_models import default_model

    rgb = test_image(args.data)
    model = default_model()
    sal = model.msroi_map(rgb)
    qualities = encoder.level_qualities(5, (30, 70))
    options = encoder._check_options({}, "dct")

    def plain():
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=50, subsampling=2)

    def block_stage(mode):
        if mode == "dct":  # the transform kept, as rate control keeps it: levels + requantisation only
            coder = encoder._DctCoder(rgb, sal, 5, options, reuse_transform=True)
            return lambda: (encoder._cell_levels(sal, coder.cell_size, 5), coder.coefficients(qualities, qualities[-1]))
        return lambda: encoder._MosaicCoder(rgb, sal, 5, options).mosaic(qualities)

    dct = encoder._DctCoder(rgb, sal, 5, options, reuse_transform=True)
    coefs, frame = dct.coefficients(qualities, qualities[-1])

    rows = {"plain Pillow encode Q50": median_ms(plain, args.runs),
            "MS-ROI map (shipped model)": median_ms(lambda: model.msroi_map(rgb), args.runs)}
    rows["dct: its final encode (forward DCT + entropy coding)"] = median_ms(
        lambda: (encoder.forward_dct(rgb, dct.header), dct.encode_coefficients(coefs, frame)), args.runs)
    rows["dct: whole encode with the map given"] = median_ms(lambda: semantic_jpeg.encode(rgb, saliency=sal), args.runs)
    for mode in ("dct", "mosaic"):
        rows[f"{mode}: block stage"] = median_ms(block_stage(mode), args.runs)
        rows[f"{mode}: end-to-end, shipped model"] = median_ms(
            lambda mode=mode: semantic_jpeg.encode(rgb, mode=mode), args.runs)
        rows[f"{mode}: end-to-end + match Q50 size"] = median_ms(
            lambda mode=mode: semantic_jpeg.encode(rgb, mode=mode, match_jpeg_quality=50), args.runs)
    base = rows["plain Pillow encode Q50"] + rows["MS-ROI map (shipped model)"]
    plain_ms = rows["plain Pillow encode Q50"]
    ratios = {"dct: its final encode / plain Pillow encode":
              rows["dct: its final encode (forward DCT + entropy coding)"] / plain_ms,
              "dct: whole encode with the map given / plain Pillow encode":
              rows["dct: whole encode with the map given"] / rows["plain Pillow encode Q50"]}
    for mode in ("dct", "mosaic"):
        ratios[f"{mode}: block stage / plain encode (target <= 1)"] = rows[f"{mode}: block stage"] / plain_ms
        ratios[f"{mode}: end-to-end / (map + plain encode) (target <= 1.5)"] = (
            rows[f"{mode}: end-to-end, shipped model"] / base)
        ratios[f"{mode}: size-matched / (map + plain encode) (target <= 3)"] = (
            rows[f"{mode}: end-to-end + match Q50 size"] / base)

    RESULTS.mkdir(exist_ok=True)
    peak = {f"{mode}: peak allocation of a size-matched 1080p encode (MiB)":
            peak_mib(lambda mode=mode: semantic_jpeg.encode(rgb, saliency=sal, mode=mode, match_jpeg_quality=50))
            for mode in ("dct", "mosaic")}
    peak["input image (MiB)"] = rgb.nbytes / 2 ** 20
    iterations = {mode: semantic_jpeg.encode(rgb, saliency=sal, mode=mode, match_jpeg_quality=50,
                                             return_result=True).iterations for mode in ("dct", "mosaic")}

    command = "python benchmarks/bench_codec_speed.py " + " ".join(sys.argv[1:])
    lines = [f"Command: `{command.strip()}` — 1920x1080, median of {args.runs} runs, 2-core CPU, onnxruntime "
             f"{model.providers}", "", "| stage | ms |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rows.items()]
    lines += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in ratios.items()]
    lines += ["", "| memory | MiB |", "|---|---|"] + [f"| {k} | {v:.0f} |" for k, v in peak.items()]
    lines += ["", "Encodes per size-matched file (rate-control trials): "
              + ", ".join(f"{m} {n}" for m, n in iterations.items())]
    report = "\n".join(lines)
    print(report)
    (RESULTS / "codec_speed.md").write_text(report + "\n")
    summary = {"command": command, "ms": rows, "ratios": ratios, "peak_mib": peak, "rate_control_encodes": iterations}
    (RESULTS / "codec_speed.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
