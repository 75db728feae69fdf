"""The default encoder without rate control (``rate_control=False``): how close its one-pass file comes to the
size of a plain Pillow JPEG at the same ``quality``, and what it loses against a size-matched encode at the
size it produced.

Images: Kodak (lossless) and an evenly spaced subset of NUS scene downscaled by 2 (its stimuli's JPEG grid
broken, as in bench_vs_jpegli.py), the codec's default map. For each ``quality`` Q in (50, 75, 85): the one-pass
file's size over Pillow's at Q (median, 10th-90th percentile, range), and the PSNR (Kodak) or fixation-weighted
PSNR (NUS) of the one-pass file minus that of ``encode(target_size=<its size>)``.

    python benchmarks/bench_one_pass.py [--data ../shared/data] [--n 20] [--kodak 24]

Writes benchmarks/results/codec_one_pass.{md,json} (``--out``).
"""
import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from bench_vs_jpegli import DATA, RESULTS, decode, load_set, pillow_jpeg, psnr
from PIL import Image

QUALITIES = (50, 75, 85)


def rows_for(name, images):
    from tqdm import tqdm

    from semantic_jpeg.codec import RateControlWarning, encode
    rows = []
    for image, rgb, density in tqdm(images, desc=name, file=sys.stderr):
        for q in QUALITIES:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RateControlWarning)
                one = encode(rgb, quality=q, rate_control=False)
                matched = encode(rgb, target_size=len(one))
            a, b = decode(one), decode(matched)
            rows.append({"set": name, "image": image, "Q": q, "bytes": len(one),
                         "pillow_bytes": len(pillow_jpeg(rgb, q)), "matched_bytes": len(matched),
                         "d_quality": psnr(rgb, a, density) - psnr(rgb, b, density)})
    return rows


def summary(rows):
    out = []
    for name in dict.fromkeys(r["set"] for r in rows):
        for q in QUALITIES:
            sub = [r for r in rows if r["set"] == name and r["Q"] == q]
            ratio = np.array([r["bytes"] / r["pillow_bytes"] for r in sub])
            out.append({"set": name, "Q": q, "n": len(sub), "size_ratio_median": float(np.median(ratio)),
                        "size_ratio_p10": float(np.percentile(ratio, 10)),
                        "size_ratio_p90": float(np.percentile(ratio, 90)), "size_ratio_min": float(ratio.min()),
                        "size_ratio_max": float(ratio.max()),
                        "d_quality_mean": float(np.mean([r["d_quality"] for r in sub]))})
    return out


def markdown(summ, command):
    lines = ["# One pass without rate control (`rate_control=False`)", "", f"Command: `{command}`.", "",
             "Size: the one-pass file over a plain Pillow JPEG at the same quality. Quality: PSNR (Kodak) or "
             "fixation-weighted PSNR (NUS scene) of the one-pass file minus that of a size-matched encode "
             "(`target_size` = the one-pass file's size). Default map.", "",
             "| set | Q | images | size / Pillow (median) | 10th-90th percentile | range | dPSNR(-F) vs size-matched |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for s in summ:
        lines.append(f"| {s['set']} | {s['Q']} | {s['n']} | {s['size_ratio_median']:.3f} | "
                     f"{s['size_ratio_p10']:.3f}-{s['size_ratio_p90']:.3f} | {s['size_ratio_min']:.3f}-"
                     f"{s['size_ratio_max']:.3f} | {s['d_quality_mean']:+.3f} dB |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--n", type=int, default=20, help="NUS scene images (default 20)")
    parser.add_argument("--kodak", type=int, default=24, help="Kodak images (default 24)")
    parser.add_argument("--out", default=str(RESULTS / "codec_one_pass"), help="results path without suffix")
    args = parser.parse_args(argv)
    kodak = []
    for path in sorted((Path(args.data) / "kodak").glob("kodim*.png"))[:args.kodak]:
        with Image.open(path) as im:
            kodak.append((path.name, np.asarray(im.convert("RGB")), None))
    rows = rows_for("kodak", kodak) + rows_for("nus_scene", load_set(args.data, "nus_scene", 0, None, args.n))
    summ = summary(rows)
    command = f"python benchmarks/bench_one_pass.py --n {args.n} --kodak {args.kodak}"
    text = markdown(summ, command)
    print(text)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps({"summary": summ, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
