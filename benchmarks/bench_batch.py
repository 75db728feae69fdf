"""Batch encoding throughput and memory: 1 vs N worker processes, Pillow / jpegli / ours, Ray Data, peak RSS.

Measures, in one run (so the numbers share the machine's state):

1. Throughput (images/s, MB/s of input files in, MB/s of JPEG out) of decode + encode over the Kodak photos for
   Pillow (quality 75), jpegli (quality 75) and semantic JPEG (the default map and options) at 1 and N workers,
   all through the same worker pool (``semantic_jpeg.codec.batch.WorkerPool``, worker start-up included), plus
   the ``semantic-jpeg encode`` command itself at ``--jobs 1`` and ``--jobs N``. Ours must give identical bytes
   at every N (checked).
2. Ray Data (``semantic_jpeg.ray.SemanticJpegEncoder`` on ``ray.init(num_cpus=N)``): wall time of the dataset
   execution (and of ``ray.init``), bytes compared with ``semantic_jpeg.encode``.
3. Peak resident memory (all processes of the command summed, sampled every 50 ms from /proc) of
   ``semantic-jpeg encode --jobs N`` over M and over 10 inputs (the Kodak photos repeated under distinct names).

Each timing is the faster of ``--repeats`` runs. Writes benchmarks/results/batch_throughput.{json,md}.

    python benchmarks/bench_batch.py                       # 24 Kodak photos, N=2, RSS of 1,000 vs 10 images
    python benchmarks/bench_batch.py --rss-images 200 --no-ray   # quicker
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semantic_jpeg.codec.batch import WorkerPool, default_jobs  # noqa: E402


# ----- per-image work of each codec (module level: run in worker processes)
def _decode(path):
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def pillow_item(path):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(_decode(path)).save(buffer, "JPEG", quality=75)
    return os.path.getsize(path), buffer.getvalue()


def jpegli_item(path):
    import pyjpegli

    rgb = np.ascontiguousarray(_decode(path))
    return os.path.getsize(path), pyjpegli.encode(rgb.tobytes(), rgb.shape[1], rgb.shape[0], 75)


def ours_item(path):
    import semantic_jpeg

    return os.path.getsize(path), semantic_jpeg.encode(_decode(path))


CODECS = {"Pillow q75": pillow_item, "jpegli q75": jpegli_item, "semantic JPEG (default)": ours_item}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its children that have ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_pool(fn, paths, jobs):
    start, cpu = time.perf_counter(), cpu_seconds()
    out = [value for _, _, value, ok in WorkerPool(fn, jobs=jobs).run(paths) if ok or _raise(value)]
    return time.perf_counter() - start, out, cpu_seconds() - cpu


def _raise(exc):
    raise exc


def best(fn, repeats):
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r[0])


# ----- memory of a process tree, from /proc
def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as handle:
                    stack += [int(c) for c in handle.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def peak_rss_of(cmd: list[str]) -> tuple[int, float, int]:
    """(peak summed RSS in bytes, wall seconds, exit status) of a command."""
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, start = 0, time.perf_counter()
    stop = threading.Event()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(process.pid))
            stop.wait(0.05)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, err = process.communicate()
    stop.set()
    thread.join()
    if process.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} failed: {err.decode()[-2000:]}")
    return peak, time.perf_counter() - start, process.returncode


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "semantic_jpeg.cli", "encode", *map(str, args)]


def ray_run(paths, jobs, folder):
    """Wall seconds of ray.init and of the Ray Data pipeline, and the JPEG bytes per path."""
    import ray

    from semantic_jpeg.ray import SemanticJpegEncoder

    start = time.perf_counter()
    ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        runs = []
        for _ in range(2):  # the first run also starts the actors' processes
            start = time.perf_counter()
            ds = ray.data.read_images(str(folder), mode="RGB", include_paths=True)
            ds = ds.map_batches(SemanticJpegEncoder,
                                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=jobs), batch_size=4)
            rows = ds.select_columns(["path", "jpeg"]).take_all()
            runs.append(time.perf_counter() - start)
    finally:
        ray.shutdown()
    by_name = {Path(r["path"]).name: bytes(r["jpeg"]) for r in rows}
    return init_s, runs, [by_name[Path(p).name] for p in paths]


def default_saliency(rgb) -> dict:
    """Which model and map ``encode(saliency=None)`` uses now: found by comparing the maps (the default changes
    as the project develops)."""
    from semantic_jpeg.codec.inputs import saliency_to_array
    from semantic_jpeg.onnx_models import DEFAULT_MODEL, default_model

    used = saliency_to_array(None, rgb)
    candidates = {f"{DEFAULT_MODEL}.msroi_map": lambda: default_model().msroi_map(rgb)}
    try:
        from semantic_jpeg.onnx_models.gaze_model import DEFAULT_GAZE_MODEL, default_gaze_model
        candidates[f"{DEFAULT_GAZE_MODEL}.saliency_map"] = lambda: default_gaze_model().saliency_map(rgb)
    except ImportError:
        pass
    same = [name for name, fn in candidates.items()
            if (m := fn()).shape == used.shape and np.allclose(m, used, atol=1e-6)]
    return {"map": same[0] if same else "unknown (none of " + ", ".join(candidates) + ")"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/kodak"), help="folder of PNG photos")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="N: workers of the parallel runs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (the fastest is kept)")
    parser.add_argument("--rss-images", type=int, default=1000, help="M: inputs of the large memory run")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Data measurement")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results"), help="folder for the results")
    args = parser.parse_args()

    paths = sorted(str(p) for p in Path(args.data).glob("*.png"))
    if not paths:
        raise SystemExit(f"no PNG files in {args.data}")
    n = args.jobs
    in_mb = sum(os.path.getsize(p) for p in paths) / 1e6
    load_before = os.getloadavg()
    results = {"images": len(paths), "input_mb": round(in_mb, 3), "jobs": n, "repeats": args.repeats,
               "cpus_available": default_jobs(), "cpu": platform.processor() or platform.machine(),
               "python": platform.python_version(),
               "command": "python benchmarks/bench_batch.py " + shlex.join(sys.argv[1:]), "throughput": []}
    print(f"{len(paths)} images, {in_mb:.1f} MB of PNG; N = {n}; load average before: {load_before}")

    # N workers first: this process has not imported onnxruntime yet, so the workers are forked (as the command
    # line's are) and their CPU time is counted; the 1-worker runs then load the model in this process
    bytes_by_jobs = {}
    for name, fn in CODECS.items():
        for jobs in sorted({1, n}, reverse=True):
            seconds, out, cpu = best(lambda fn=fn, jobs=jobs: run_pool(fn, paths, jobs), args.repeats)
            out_mb = sum(len(d) for _, d in out) / 1e6
            row = {"codec": name, "how": "WorkerPool", "jobs": jobs, "seconds": round(seconds, 3),
                   "cpu_seconds": round(cpu, 3),
                   "images_per_s": round(len(paths) / seconds, 3), "mb_in_per_s": round(in_mb / seconds, 3),
                   "mb_out_per_s": round(out_mb / seconds, 3)}
            results["throughput"].append(row)
            print(row)
            if fn is ours_item:
                bytes_by_jobs[jobs] = [d for _, d in out]
    import onnxruntime

    import semantic_jpeg
    assert bytes_by_jobs[1][:2] == [semantic_jpeg.encode(_decode(p)) for p in paths[:2]], "differs from encode"
    results["identical_bytes_across_jobs"] = all(bytes_by_jobs[j] == bytes_by_jobs[1] for j in bytes_by_jobs)
    results["onnxruntime"] = onnxruntime.__version__
    results["default_saliency"] = default_saliency(_decode(paths[0]))

    with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
        tmp = Path(tmp)
        cli_bytes, timings = {}, {jobs: [] for jobs in sorted({1, n})}

        def once(jobs):
            out = tmp / f"cli{jobs}"
            start, cpu = time.perf_counter(), cpu_seconds()
            subprocess.run(cli(*paths, "-o", out, "--jobs", jobs, "--overwrite"), check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - start, out, cpu_seconds() - cpu

        for _ in range(args.repeats):  # 1 and N interleaved, so a change in the machine's load hits both
            for jobs in timings:
                timings[jobs].append(once(jobs))
        for jobs, runs in timings.items():
            seconds, out, cpu = min(runs, key=lambda r: r[0])
            cli_bytes[jobs] = [(out / (Path(p).stem + ".jpg")).read_bytes() for p in paths]
            out_mb = sum(map(len, cli_bytes[jobs])) / 1e6
            row = {"codec": "semantic JPEG (default)", "how": "semantic-jpeg encode", "jobs": jobs,
                   "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                   "images_per_s": round(len(paths) / seconds, 3), "mb_in_per_s": round(in_mb / seconds, 3),
                   "mb_out_per_s": round(out_mb / seconds, 3), "all_seconds": [round(r[0], 3) for r in runs]}
            results["throughput"].append(row)
            print(row)
        # compared within the section: the command and the Ray actors load the codec afresh
        results["cli_identical_bytes_across_jobs"] = cli_bytes[n] == cli_bytes[1]

        if not args.no_ray:
            init_s, runs, ray_bytes = ray_run(paths, n, args.data)
            seconds = min(runs)
            row = {"codec": "semantic JPEG (default)", "how": f"Ray Data, ray.init(num_cpus={n})", "jobs": n,
                   "seconds": round(seconds, 3), "images_per_s": round(len(paths) / seconds, 3),
                   "mb_in_per_s": round(in_mb / seconds, 3),
                   "mb_out_per_s": round(sum(map(len, ray_bytes)) / 1e6 / seconds, 3),
                   "ray_init_seconds": round(init_s, 3), "runs_seconds": [round(r, 3) for r in runs]}
            results["throughput"].append(row)
            results["ray_identical_bytes"] = ray_bytes == cli_bytes[1]  # the command = encode's defaults
            print(row)

        links = tmp / "many"
        links.mkdir()
        for i in range(args.rss_images):
            os.symlink(paths[i % len(paths)], links / f"img{i:05d}.png")
        names = sorted(str(p) for p in links.iterdir())
        rss = {}
        for count in (10, args.rss_images):
            listing = tmp / f"list{count}.txt"
            listing.write_text("\n".join(names[:count]) + "\n")
            peak, seconds, _ = peak_rss_of(cli("--from-file", listing, "-o", tmp / f"rss{count}", "--jobs", n))
            rss[count] = {"peak_rss_mb": round(peak / 2 ** 20, 1), "seconds": round(seconds, 1)}
            print(count, rss[count])
        results["peak_rss"] = {"jobs": n, "runs": rss,
                               "ratio": round(rss[args.rss_images]["peak_rss_mb"] / rss[10]["peak_rss_mb"], 3)}
    results["load_average_before_after"] = [load_before, os.getloadavg()]
    write(results, Path(args.out))
    return 0


def write(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch_throughput.json").write_text(json.dumps(results, indent=1) + "\n")
    rows = results["throughput"]
    one = {(r["codec"], r["how"]): r for r in rows if r["jobs"] == 1}
    lines = [
        "# Batch encoding throughput and memory",
        "",
        f"`{results['command']}`: {results['images']} Kodak photos ({results['input_mb']} MB of PNG), decode + "
        f"encode, {results['cpus_available']} CPUs available, Python {results['python']}, onnxruntime "
        f"{results['onnxruntime']}. Each time is the faster of {results['repeats']} runs, worker start-up "
        f"included. Default saliency map (`encode(saliency=None)`): {results['default_saliency']['map']}, with "
        "encode's default options. CPU s: user + system CPU time of "
        "the bench process and its ended children (the workers; the command line and its workers). The CPU was "
        "shared with other jobs during the run: load average (1, 5, 15 min) before / after "
        f"{results['load_average_before_after'][0]} / {results['load_average_before_after'][1]} on "
        f"{results['cpus_available']} CPUs, so wall-time speed-ups understate what idle cores give.",
        "",
        "| codec | how | workers | wall s | CPU s | images/s | MB/s in | MB/s out | speed-up vs 1 worker |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base = one.get((r["codec"], r["how"])) or one.get((r["codec"], "WorkerPool"))
        speedup = f"{base['seconds'] / r['seconds']:.2f}x" if base else ""
        lines.append(f"| {r['codec']} | {r['how']} | {r['jobs']} | {r['seconds']} | {r.get('cpu_seconds', '')} | "
                     f"{r['images_per_s']} | "
                     f"{r['mb_in_per_s']} | {r['mb_out_per_s']} | {speedup} |")
    lines += ["", f"Identical bytes at every worker count (pool): {results['identical_bytes_across_jobs']}; "
                  f"command line: {results['cli_identical_bytes_across_jobs']}"
                  + (f"; Ray Data vs the command line (both `semantic_jpeg.encode` with its defaults): "
                     f"{results['ray_identical_bytes']}"
                     if "ray_identical_bytes" in results else "") + "."]
    ray_rows = [r for r in rows if r["how"].startswith("Ray")]
    for r in ray_rows:
        lines += ["", f"Ray Data: `ray.init` took {r['ray_init_seconds']} s (not in the table); pipeline runs "
                      f"{r['runs_seconds']} s (the first also starts the actors)."]
    rss = results["peak_rss"]
    lines += ["", f"Peak resident memory of `semantic-jpeg encode --jobs {rss['jobs']}` (the command and its "
                  "workers summed, sampled every 50 ms):", "", "| inputs | peak RSS (MiB) | s |", "|---:|---:|---:|"]
    for count, r in rss["runs"].items():
        lines.append(f"| {count} | {r['peak_rss_mb']} | {r['seconds']} |")
    lines += ["", f"Ratio {rss['ratio']} (large run / 10-image run)."]
    (out / "batch_throughput.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
