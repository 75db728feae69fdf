"""semantic_jpeg's default encoder (mode "rdo") vs jpegli at equal file size.

Eye-tracking sets (NUS scene, OSIE): every stimulus is downscaled by 2 (Lanczos) so that the old JPEG grid of the
stimulus is broken. For each Pillow quality Q in (50, 75, 85) the reference is jpegli (pyjpegli) at the integer
quality whose file size is closest to Pillow's at Q (4:2:0). pyjpegli's files are not Huffman-optimised
(4-8% larger than the same coefficients re-coded with optimised tables), so the main comparison is at the
size of jpegli's coefficients with optimised Huffman tables (``jpegli_opt``: same pixels, fewer bytes), and a
second one at the pyjpegli file's own size. Ours is encoded with ``target_size`` = that size (1% tolerance)
under four maps: uniform (no saliency: the encoder's own gain), the codec's default model (saliency=None), a
centre-bias Gaussian and the human fixation density (oracle: what a perfect map gives). Metrics: PSNR-F
(squared error weighted by the fixation density: fixations blurred by a Gaussian of sigma = 2% of the image
diagonal), whole-image PSNR (RGB), SSIMULACRA2 (the ``ssimulacra2`` package). Kodak (no fixations): ours with a
uniform map at the same two sizes. Speed: one encode with the map given (size matched, as the mode always is) /
one jpegli encode of the same image, same run.

Images: an evenly spaced subset (``--n``) of NUS scene and of OSIE 1001-1600; the encoder's constants (strength,
headroom, masking, rank transfer, frequency weighting) were chosen with ``--tune`` grids on OSIE 1601-1700 only
(never on the reported images), against the pyjpegli file's size.

    python benchmarks/bench_vs_jpegli.py [--data ../shared/data] [--n 20] [--kodak 24]
    python benchmarks/bench_vs_jpegli.py --tune [--n 10]
    python benchmarks/bench_vs_jpegli.py --from-json benchmarks/results/codec_vs_jpegli.json   # report only
"""
import argparse
import csv
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from bench_common import best, centre_bias, fixation_density
from PIL import Image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"
FIGURE = Path(__file__).resolve().parents[1] / "docs" / "img" / "codec_rd.png"
QUALITIES = (50, 75, 85)
NAMES = {"pillow": "Pillow", "jpegli": "jpegli, pyjpegli file (mean q {q:.1f})",
         "jpegli_opt": "jpegli + optimised Huffman (same pixels)",
         "ours_uniform": "ours, uniform map", "ours_default": "ours, default map", "ours_centre": "ours, centre bias",
         "ours_oracle": "ours, human fixations (oracle)",
         "ours_uniform@pyjpegli": "ours, uniform map, at the pyjpegli file's size",
         "ours_default@pyjpegli": "ours, default map, at the pyjpegli file's size",
         "ours_centre@pyjpegli": "ours, centre bias, at the pyjpegli file's size",
         "ours_oracle@pyjpegli": "ours, oracle, at the pyjpegli file's size",
         "ours_uniform_jpeglicore": "ours with core='jpegli' (jpegli's coefficients), uniform map",
         "ours_default_jpeglicore": "ours with core='jpegli' (jpegli's coefficients), default map"}


def pillow_jpeg(rgb, q):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=q, subsampling=2)
    return buf.getvalue()


def jpegli(rgb, q):
    import pyjpegli
    return pyjpegli.encode(np.ascontiguousarray(rgb).tobytes(), rgb.shape[1], rgb.shape[0], int(q))


def jpegli_closest(rgb, target):
    """jpegli at the integer quality whose size is closest to ``target``: (quality, bytes)."""
    sizes = {}
    lo, hi = 1, 100
    while hi - lo > 1:  # size is monotone in quality
        mid = (lo + hi) // 2
        sizes[mid] = jpegli(rgb, mid)
        lo, hi = (mid, hi) if len(sizes[mid]) < target else (lo, mid)
    for q in (lo, hi):
        sizes.setdefault(q, jpegli(rgb, q))
    q = min((lo, hi), key=lambda k: abs(len(sizes[k]) - target))
    return q, sizes[q]


def huffman_optimised(data):
    """The same coefficients re-coded losslessly with optimised Huffman tables (libjpeg via jpeglib, as
    ``jpegtran -optimize`` does): pyjpegli's files are 4-8% larger than that."""
    from semantic_jpeg.codec.encoder import _optimize_huffman
    return _optimize_huffman(data)


def decode(data):
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def psnr(ref, dist, weights=None):
    err = ((ref.astype(np.float64) - dist.astype(np.float64)) ** 2).mean(axis=2)
    mse = err.mean() if weights is None else (err * weights).sum() / weights.sum()
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


class Ssimulacra2:
    """SSIMULACRA2 of a JPEG against a reference array (the package reads files: the reference is written
    once as PNG)."""

    def __init__(self, ref, tmp):
        self.tmp = tmp
        self.ref_path = os.path.join(tmp, "ref.png")
        Image.fromarray(ref).save(self.ref_path)

    def __call__(self, data):
        from ssimulacra2 import compute_ssimulacra2
        path = os.path.join(self.tmp, "dist.jpg")
        with open(path, "wb") as f:
            f.write(data)
        return float(compute_ssimulacra2(self.ref_path, path))


def load_set(data_dir, name, first, last, n):
    """(image name, downscaled RGB, fixation density) for an evenly spaced subset of n images of a set whose
    sorted names are taken from index ``first`` to ``last``."""
    root = Path(data_dir) / "saliency" / name
    fixations = {}
    with open(root / "fixations.csv") as f:
        for row in csv.DictReader(f):
            fixations.setdefault(row["image"], []).append((float(row["y"]), float(row["x"])))
    names = sorted(fixations)[first:last]
    picked = [names[int(i)] for i in np.linspace(0, len(names) - 1, n)] if n < len(names) else names
    out = []
    for image in picked:
        with Image.open(root / "stimuli" / image) as im:
            im = im.convert("RGB")
            w, h = im.size
            rgb = np.asarray(im.resize((w // 2, h // 2), Image.LANCZOS))
        sy, sx = (h // 2) / h, (w // 2) / w
        density = fixation_density([(y * sy, x * sx) for y, x in fixations[image]], rgb.shape[:2])
        out.append((f"{name}/{image}", rgb, density))
    return out


def default_map(rgb):
    """The map the codec uses with saliency=None (its default model), as the encode reports it."""
    from semantic_jpeg.codec import encode
    return encode(rgb, quality=50, return_result=True).saliency


def encode_ours(rgb, sal, target, **kw):
    from semantic_jpeg.codec import RateControlWarning, encode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RateControlWarning)
        data = encode(rgb, saliency=sal, target_size=target, size_tolerance=0.01, **kw)
    return data, bool(caught)


def fixation_rows(images, maps, encode_kw=None, qualities=QUALITIES, progress="images"):
    from tqdm import tqdm
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, rgb, density in tqdm(images, desc=progress, file=sys.stderr):
            s2 = Ssimulacra2(rgb, tmp)
            map_arrays = {}
            for m in maps:
                if m == "default":
                    map_arrays[m] = default_map(rgb)
                elif m == "uniform":
                    map_arrays[m] = np.full(rgb.shape[:2], 0.5, np.float32)
                elif m == "centre":
                    map_arrays[m] = centre_bias(rgb.shape[:2])
                else:
                    map_arrays[m] = (density / density.max()).astype(np.float32)
            for q in qualities:
                plain = pillow_jpeg(rgb, q)
                jq, ref = jpegli_closest(rgb, len(plain))
                row = {"image": name, "Q": q, "pixels": rgb.shape[0] * rgb.shape[1], "jpegli_quality": jq}
                for label, data in (("pillow", plain), ("jpegli", ref)):
                    dec = decode(data)
                    row[label] = {"bytes": len(data), "PSNR-F": psnr(rgb, dec, density), "PSNR": psnr(rgb, dec),
                                  "SSIMULACRA2": s2(data)}
                # the same coefficients with optimised Huffman tables: same pixels, fewer bytes
                row["jpegli_opt"] = dict(row["jpegli"], bytes=len(huffman_optimised(ref)))
                targets = {"": row["jpegli_opt"]["bytes"]} if encode_kw else {"": row["jpegli_opt"]["bytes"],
                                                                              "@pyjpegli": len(ref)}
                for m, sal in map_arrays.items():
                    for (variant, kw), (suffix, target) in ((v, t) for v in (encode_kw or {"": {}}).items()
                                                            for t in targets.items()):
                        from semantic_jpeg.codec import rdo
                        saved = {k: getattr(rdo, k[4:]) for k in kw if k.startswith("rdo.")}
                        for k in saved:
                            setattr(rdo, k[4:], kw[k])
                        data, missed = encode_ours(rgb, sal, target, **{k: v for k, v in kw.items()
                                                                       if not k.startswith("rdo.")})
                        for k, v in saved.items():
                            setattr(rdo, k[4:], v)
                        dec = decode(data)
                        row[f"ours_{m}{variant}{suffix}"] = {
                            "bytes": len(data), "PSNR-F": psnr(rgb, dec, density), "PSNR": psnr(rgb, dec),
                            "SSIMULACRA2": s2(data), "size_missed": missed, "target": target}
                    if not encode_kw and m in ("uniform", "default"):  # the other core, at the strict size
                        target = row["jpegli_opt"]["bytes"]
                        data, missed = encode_ours(rgb, sal, target, core="jpegli")
                        dec = decode(data)
                        row[f"ours_{m}_jpeglicore"] = {
                            "bytes": len(data), "PSNR-F": psnr(rgb, dec, density), "PSNR": psnr(rgb, dec),
                            "SSIMULACRA2": s2(data), "size_missed": missed, "target": target}
                rows.append(row)
    return rows


def kodak_rows(data_dir, n, qualities=QUALITIES):
    from tqdm import tqdm
    paths = sorted((Path(data_dir) / "kodak").glob("kodim*.png"))[:n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in tqdm(paths, desc="kodak", file=sys.stderr):
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
            s2 = Ssimulacra2(rgb, tmp)
            uniform = np.full(rgb.shape[:2], 0.5, np.float32)
            for q in qualities:
                plain = pillow_jpeg(rgb, q)
                jq, ref = jpegli_closest(rgb, len(plain))
                opt = len(huffman_optimised(ref))
                row = {"image": path.name, "Q": q, "pixels": rgb.shape[0] * rgb.shape[1], "jpegli_quality": jq}
                for label, d in (("pillow", plain), ("jpegli", ref)):
                    dec = decode(d)
                    row[label] = {"bytes": len(d), "PSNR": psnr(rgb, dec), "SSIMULACRA2": s2(d)}
                row["jpegli_opt"] = dict(row["jpegli"], bytes=opt)
                for label, target, kw in (("ours_uniform", opt, {}), ("ours_uniform@pyjpegli", len(ref), {}),
                                          ("ours_uniform_jpeglicore", opt, {"core": "jpegli"})):
                    data, missed = encode_ours(rgb, uniform, target, **kw)
                    dec = decode(data)
                    row[label] = {"bytes": len(data), "PSNR": psnr(rgb, dec), "SSIMULACRA2": s2(data),
                                  "size_missed": missed, "target": target}
                rows.append(row)
    return rows


def speed_rows(data_dir, repeats=3):
    """Seconds of one jpegli encode and of ours (map given, size matched to Pillow Q75) on a Kodak image
    (768x512), the same upscaled to 1024x768 and to 1920x1080."""
    from semantic_jpeg.codec import encode
    with Image.open(sorted((Path(data_dir) / "kodak").glob("kodim*.png"))[0]) as im:
        base = im.convert("RGB")
    rows = []
    for size in ((768, 512), (1024, 768), (1920, 1080)):
        rgb = np.asarray(base.resize(size, Image.LANCZOS))
        sal = centre_bias(rgb.shape[:2])

        t_jpegli = best(lambda rgb=rgb: jpegli(rgb, 85), repeats)
        t_ours = best(lambda rgb=rgb, sal=sal: encode(rgb, saliency=sal, quality=75), repeats)
        rows.append({"size": f"{size[0]}x{size[1]}", "jpegli_s": t_jpegli, "ours_s": t_ours,
                     "ratio": t_ours / t_jpegli})
    return rows


def summarise(rows, keys, metrics=("PSNR-F", "PSNR", "SSIMULACRA2")):
    """Per Q: mean bytes and metric of jpegli, and mean difference ours - jpegli for each key."""
    out = {}
    for q in sorted({r["Q"] for r in rows}):
        sub = [r for r in rows if r["Q"] == q]
        entry = {"n": len(sub), "jpegli_quality_mean": float(np.mean([r["jpegli_quality"] for r in sub]))}
        for label in ("pillow", "jpegli", "jpegli_opt") + tuple(keys):
            entry[label] = {m: float(np.mean([r[label][m] for r in sub])) for m in ("bytes",) + metrics}
            if label not in ("pillow", "jpegli", "jpegli_opt"):
                entry[label]["delta"] = {m: float(np.mean([r[label][m] - r["jpegli"][m] for r in sub]))
                                         for m in metrics}
                entry[label]["size_vs_target"] = float(np.mean([r[label]["bytes"] / r[label]["target"] - 1
                                                                for r in sub]))
                entry[label]["size_missed"] = int(sum(r[label].get("size_missed", False) for r in sub))
        out[q] = entry
    return out


def markdown(summary, keys, metrics, title):
    lines = [f"### {title}", "",
             "| size of | encoder | bytes (mean) | size vs its target | " + " | ".join(metrics) + " | "
             + " | ".join(f"d{m} vs jpegli" for m in metrics) + " |",
             "|---|---|---:|---:|" + "---:|" * (2 * len(metrics))]
    for q, entry in summary.items():
        for label in ("pillow", "jpegli", "jpegli_opt") + tuple(keys):
            e = entry[label]
            delta = e.get("delta")
            size = f"{e['size_vs_target']:+.2%}" if delta else ""
            name = NAMES.get(label, label).format(q=entry["jpegli_quality_mean"])
            lines.append(f"| Pillow Q{q} (n={entry['n']}) | {name} | {e['bytes']:.0f} | {size} | "
                         + " | ".join(f"{e[m]:.2f}" for m in metrics) + " | "
                         + " | ".join(f"{delta[m]:+.2f}" if delta else "" for m in metrics) + " |")
    return "\n".join(lines) + "\n"


def rd_plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [("pillow", "Pillow (libjpeg)"), ("jpegli", "jpegli (pyjpegli file)"),
              ("jpegli_opt", "jpegli + optimised Huffman"), ("ours_uniform", "ours, uniform map"),
              ("ours_centre", "ours, centre-bias map"),
              ("ours_default", "ours, default map"), ("ours_oracle", "ours, human fixation map")]
    for ax, metric in zip(axes, ("PSNR-F", "SSIMULACRA2")):
        for key, name in labels:
            if key not in rows[0]:
                continue
            xs, ys = [], []
            for q in sorted({r["Q"] for r in rows}):
                sub = [r for r in rows if r["Q"] == q]
                xs.append(np.mean([8 * r[key]["bytes"] / r["pixels"] for r in sub]))
                ys.append(np.mean([r[key][metric] for r in sub]))
            ax.plot(xs, ys, "o-", label=name)
        ax.set_xlabel("bits per pixel (mean)")
        ax.set_ylabel(metric + (" (dB, fixation-weighted)" if metric == "PSNR-F" else ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"NUS scene + OSIE, downscaled by 2 ({len({r['image'] for r in rows})} images): "
                 "sizes of Pillow Q50/75/85")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--n", type=int, default=20, help="images per eye-tracking set (default 20)")
    parser.add_argument("--kodak", type=int, default=24, help="Kodak images (default 24)")
    parser.add_argument("--tune", action="store_true", help="grid over strength/headroom on OSIE 1601-1700")
    parser.add_argument("--out", default=str(RESULTS / "codec_vs_jpegli"), help="results path without suffix")
    parser.add_argument("--from-json", help="rewrite the report (md, json, plot) of a stored run without encoding")
    args = parser.parse_args(argv)
    metrics = ("PSNR-F", "PSNR", "SSIMULACRA2")
    if args.tune:
        images = load_set(args.data, "osie", 600, 700, args.n)
        grid = {f"_s{s:g}_h{h:g}": {"strength": s, "headroom": h} for s in (1.25, 1.75) for h in (0.12, 0.16, 0.2)}
        grid.update({f"_h{h:g}": {"headroom": h} for h in (0.02, 0.04, 0.08)})  # for the uniform map
        rows = fixation_rows(images, ("uniform", "centre", "oracle"), grid, qualities=(50, 75, 85), progress="tune")
        keys = [k for k in rows[0] if k.startswith("ours_")]
        summary = summarise(rows, keys)
        print(markdown(summary, keys, metrics, "Tuning grid (OSIE 1601-1700)"))
        Path(args.out + "_tune.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
        return 0
    started = time.time()
    if args.from_json:  # rewrite the report of a stored run (no encoding)
        stored = json.loads(Path(args.from_json).read_text())
        rows, kodak, speed, seconds = stored["rows"], stored["kodak_rows"], stored["speed"], stored.get("seconds")
    else:
        images = load_set(args.data, "nus_scene", 0, None, args.n) + load_set(args.data, "osie", 0, 600, args.n)
        rows = fixation_rows(images, ("uniform", "default", "centre", "oracle"))
        kodak = kodak_rows(args.data, args.kodak) if args.kodak else []
        speed = speed_rows(args.data)
        seconds = time.time() - started
    keys = ("ours_uniform", "ours_default", "ours_centre", "ours_oracle", "ours_uniform@pyjpegli",
            "ours_default@pyjpegli", "ours_centre@pyjpegli", "ours_oracle@pyjpegli", "ours_uniform_jpeglicore",
            "ours_default_jpeglicore")
    keys = tuple(k for k in keys if k in rows[0])  # stored runs from before the jpegli-core rows
    fix_summary = summarise(rows, keys)
    set_keys = keys[:4] + tuple(k for k in keys if k.endswith("_jpeglicore"))
    per_set = {name: summarise([r for r in rows if r["image"].startswith(name + "/")], set_keys)
               for name in ("nus_scene", "osie")}
    kodak_keys = tuple(k for k in ("ours_uniform", "ours_uniform@pyjpegli", "ours_uniform_jpeglicore")
                       if not kodak or k in kodak[0])
    kodak_summary = summarise(kodak, kodak_keys, ("PSNR", "SSIMULACRA2")) if kodak else {}
    n_images = len({r["image"] for r in rows})
    n_kodak = len({r["image"] for r in kodak})
    report = ["## semantic_jpeg (mode 'rdo') vs jpegli at equal size\n",
              f"Command: `python benchmarks/bench_vs_jpegli.py --n {n_images // 2} --kodak {n_kodak}`"
              + (f" ({seconds:.0f} s on a shared 2-core CPU)" if seconds else "") + ".\n",
              "The default map is the codec's saliency=None model at the time of the run: the gaze "
              "(fixation-prediction) model, which was trained on OSIE (all of it) and EyeCrowd, and whose epochs "
              "were chosen on NUS scene: its OSIE rows are on training images; the NUS rows are the fair ones.\n",
              markdown(fix_summary, keys, metrics, f"NUS scene + OSIE stimuli downscaled by 2 ({n_images} images)")]
    for name, summary in per_set.items():
        report.append(markdown(summary, set_keys, metrics,
                               f"{name} only, at the Huffman-optimised jpegli size ({n_images // 2} images)"))
    if kodak:
        report.append(markdown(kodak_summary, kodak_keys, ("PSNR", "SSIMULACRA2"),
                               f"Kodak ({n_kodak} images), uniform map"))
    report.append("### Speed (one encode, map given, size matched to Pillow Q75; best of 3)\n\n"
                  "| image | jpegli (s) | ours (s) | ours / jpegli |\n|---|---:|---:|---:|\n"
                  + "".join(f"| {r['size']} | {r['jpegli_s']:.4f} | {r['ours_s']:.3f} | {r['ratio']:.0f}x |\n"
                            for r in speed))
    text = "\n".join(report)
    print(text)
    Path(args.out + ".md").write_text(text)
    Path(args.out + ".json").write_text(json.dumps({"fixation": fix_summary, "per_set": per_set,
                                                    "kodak": kodak_summary, "speed": speed, "seconds": seconds,
                                                    "rows": rows, "kodak_rows": kodak}, indent=1))
    # the committed figure only for the committed results; a run written elsewhere keeps its plot beside them
    rd_plot(rows, FIGURE if Path(args.out) == RESULTS / "codec_vs_jpegli" else Path(args.out + "_rd.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
