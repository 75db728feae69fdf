"""Speed and peak memory of the default encoder (mode "rdo") against jpegli, measured in one run.

Speed: Kodak's kodim01 resized (Lanczos) to 1024x768 and 1920x1080, a centre-bias map given (no saliency model).
Best of ``--repeats`` wall-clock times of: one jpegli encode (pyjpegli, quality 85, what the issue's targets are
ratios of), one Pillow encode at Q75 (4:2:0), ours size-matched to Pillow Q75 (``quality=75``: the Pillow
reference encode is part of it), ours at a fixed ``target_size`` (that same size, given), the same with
``core="jpegli"``, and ours in one pass (``rate_control=False``, quality 75). Ratios are to the jpegli encode
of the same image in the same run.

Memory: a child process encodes an NxN image (kodim01 resized, ``--large``, default 12000) with a map given as a
PIL "L" image and ``quality=75``; the peak resident set (Linux: VmHWM after resetting it through
/proc/self/clear_refs just before the encode; elsewhere ru_maxrss) minus the resident set before the encode,
over the input's size (N x N x 3 bytes).

    python benchmarks/bench_codec_speed_rdo.py [--data ../shared/data] [--repeats 5] [--large 12000]

Writes benchmarks/results/codec_speed_rdo.{md,json} (``--out``). Times on a shared machine vary from run to
run; the ratios are what to compare.
"""
import argparse
import io
import json
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
from bench_common import best, centre_bias
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
SIZES = ((1024, 768), (1920, 1080))


def kodim01(data_dir):
    with Image.open(Path(data_dir) / "kodak" / "kodim01.png") as im:
        return im.convert("RGB")


def speed_rows(data_dir, repeats):
    import pyjpegli

    from semantic_jpeg.codec import RateControlWarning, encode
    base = kodim01(data_dir)
    rows = []
    for size in SIZES:
        rgb = np.ascontiguousarray(np.asarray(base.resize(size, Image.LANCZOS)))
        sal = centre_bias(rgb.shape[:2])

        def pillow(q=75, rgb=rgb):
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, "JPEG", quality=q, subsampling=2)
            return buf.getvalue()

        target = len(pillow())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RateControlWarning)
            result = encode(rgb, saliency=sal, quality=75, return_result=True)  # warm-up, and what it did
            row = {"size": f"{size[0]}x{size[1]}",
                   "jpegli_s": best(lambda rgb=rgb: pyjpegli.encode(memoryview(rgb).cast("B"), rgb.shape[1],
                                                                     rgb.shape[0], 85), repeats),
                   "pillow_q75_s": best(pillow, repeats),
                   "ours_quality75_s": best(lambda rgb=rgb, sal=sal: encode(rgb, saliency=sal, quality=75), repeats),
                   "ours_target_size_s": best(lambda rgb=rgb, sal=sal, target=target: encode(
                       rgb, saliency=sal, target_size=target), repeats),
                   "jpegli_core_target_size_s": best(lambda rgb=rgb, sal=sal, target=target: encode(
                       rgb, saliency=sal, target_size=target, core="jpegli"), repeats),
                   "one_pass_s": best(lambda rgb=rgb, sal=sal: encode(rgb, saliency=sal, quality=75,
                                                                      rate_control=False), repeats),
                   "bytes": result.size, "target": target, "jpegli_quality": result.final_quality,
                   "lambda_trials": result.iterations}
        row["ratio_quality75"] = row["ours_quality75_s"] / row["jpegli_s"]
        row["ratio_target_size"] = row["ours_target_size_s"] / row["jpegli_s"]
        row["ratio_jpegli_core"] = row["jpegli_core_target_size_s"] / row["jpegli_s"]
        row["ratio_one_pass"] = row["one_pass_s"] / row["jpegli_s"]
        rows.append(row)
        print(row, file=sys.stderr)
    return rows


CHILD = r"""
import json, resource, sys, time
import numpy as np
from PIL import Image
n, path = int(sys.argv[1]), sys.argv[2]
Image.MAX_IMAGE_PIXELS = None
with Image.open(path) as im:
    rgb = np.asarray(im.convert("RGB").resize((n, n), Image.BILINEAR))
ramp = np.linspace(-1, 1, 256, dtype=np.float32)
sal = Image.fromarray((255 * np.exp(-(ramp[:, None] ** 2 + ramp[None, :] ** 2) / 0.2)).astype(np.uint8)).resize((n, n))
from semantic_jpeg.codec import encode
encode(rgb[:64, :64], saliency=np.ones((64, 64), np.float32), quality=75)  # imports, native module

def rss(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024

try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    linux = True
except OSError:
    linux = False
before = rss("VmRSS:") if linux else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
data = encode(rgb, saliency=sal, quality=75)
seconds = time.perf_counter() - t
peak = rss("VmHWM:") if linux else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"n": n, "input_bytes": rgb.nbytes, "rss_before": before, "peak": peak, "seconds": seconds,
                  "bytes": len(data), "method": "VmHWM after clear_refs" if linux else "ru_maxrss"}))
"""


def memory_row(data_dir, n):
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(Path(data_dir) / "kodak" / "kodim01.png")],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["growth_bytes"] = row["peak"] - row["rss_before"]
    row["growth_over_input"] = row["growth_bytes"] / row["input_bytes"]
    print(row, file=sys.stderr)
    return row


def markdown(rows, mem, repeats):
    lines = ["# Default encoder (mode \"rdo\"): speed and memory against jpegli", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs while this ran "
             "(absolute times vary; the ratios are measured in the same run). Command: "
             "`python benchmarks/bench_codec_speed_rdo.py`.", "",
             f"## Speed (kodim01 resized, centre-bias map given; best of {repeats})", "",
             "| size | jpegli q85 | Pillow Q75 | ours, quality=75 (size of Pillow Q75) | ratio | "
             "ours, target_size given | ratio | full encodes | core='jpegli', target_size given | ratio | "
             "ours, quality=75, rate_control=False (one pass) | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        core = (f" {1e3 * r['jpegli_core_target_size_s']:.1f} ms | {r['ratio_jpegli_core']:.1f}x |"
                if "ratio_jpegli_core" in r else " | |")
        core += (f" {1e3 * r['one_pass_s']:.1f} ms | {r['ratio_one_pass']:.1f}x |" if "one_pass_s" in r else " | |")
        lines.append(f"| {r['size']} | {1e3 * r['jpegli_s']:.1f} ms | {1e3 * r['pillow_q75_s']:.1f} ms | "
                     f"{1e3 * r['ours_quality75_s']:.1f} ms | {r['ratio_quality75']:.1f}x | "
                     f"{1e3 * r['ours_target_size_s']:.1f} ms | {r['ratio_target_size']:.1f}x | "
                     f"{r['lambda_trials']} |" + core)
    lines += ["", "Ratio: ours / one jpegli encode of the same image. Every \"rdo\" encode is size-controlled. The "
              "default (native) core transforms the image once, searches jpegli's table quality and lambda on size "
              "estimates from a sample of the blocks, then codes the whole image (one RDO pass + native "
              "optimised-Huffman coding per full encode; \"full encodes\": how many the rate control needed). "
              "core='jpegli' instead searches jpegli's quality with pyjpegli encodes, decodes jpegli's coefficients "
              "and bisects lambda with full encodes. With quality=75 the Pillow encode that sets the target is part "
              "of the time. rate_control=False: one pass at fixed tables and lambda, no size target.", ""]
    if mem:
        lines += ["## Peak memory", "",
                  "| image | input | RSS growth during the encode | growth / input | encode time |",
                  "|---|---|---|---|---|",
                  f"| {mem['n']}x{mem['n']} | {mem['input_bytes'] / 1e6:.0f} MB | {mem['growth_bytes'] / 1e6:.0f} MB | "
                  f"{mem['growth_over_input']:.2f}x | {mem['seconds']:.1f} s |", "",
                  f"Measured in a child process ({mem['method']}); the map is a PIL \"L\" image (converted to a "
                  "float32 map inside, 4 bytes per pixel, which the result keeps).", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--large", type=int, default=12000, help="side of the memory test image (0: skip)")
    parser.add_argument("--out", default=str(RESULTS / "codec_speed_rdo"), help="results path without suffix")
    args = parser.parse_args(argv)
    rows = speed_rows(args.data, args.repeats)
    mem = memory_row(args.data, args.large) if args.large else None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump({"speed": rows, "memory": mem, "repeats": args.repeats, "cpus": os.cpu_count()}, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(markdown(rows, mem, args.repeats))
    print(markdown(rows, mem, args.repeats))


if __name__ == "__main__":
    main()
