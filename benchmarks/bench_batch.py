"""Batch encoding throughput and memory: 1 vs N worker processes, Pillow / jpegli / ours, Ray Data, peak RSS.

Measures, in one run (so the numbers share the machine's state):

1. Throughput (images/s, MB/s of input files in, MB/s of JPEG out) of decode + encode over the Kodak photos for
   Pillow (quality 75), jpegli (quality 75) and semantic JPEG (the default map and options) at 1 and N workers,
   all through the same worker pool (``semantic_jpeg.codec.batch.WorkerPool``, worker start-up included), plus
   the ``semantic-jpeg encode`` command itself at ``--jobs 1`` and ``--jobs N``. Ours must give identical bytes
   at every N (checked).
2. Ray Data (docs/scaling.md's folder example, and the earlier autoscaling-pool variant, on
   ``ray.init(num_cpus=N)``) against the worker pool at 1 and N workers, on the photos and on them repeated
   (``--ray-repeat``): whole-run throughput, steady state (the marginal rate between the two sets), end to end with
   ``ray.init``; bytes compared with ``semantic_jpeg.encode``. ``--ray-only`` measures just this and updates
   that section of existing results.
3. Peak resident memory (all processes of the command summed, sampled every 50 ms from /proc) of
   ``semantic-jpeg encode --jobs N`` over M and over 10 inputs (the Kodak photos repeated under distinct names).

Each timing is the faster of ``--repeats`` runs. Writes benchmarks/results/batch_throughput.{json,md}.

    python benchmarks/bench_batch.py                       # 24 Kodak photos, N=2, RSS of 1,000 vs 10 images
    python benchmarks/bench_batch.py --rss-images 200 --no-ray   # quicker
    python benchmarks/bench_batch.py --ray-only                  # Ray Data vs the pool, 24 and 96 images
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


def _reload_default_model(threads: int | None) -> None:
    """Make this process load the default gaze model again at its next map, with ``threads`` onnxruntime
    threads: an in-process (1-worker) run then pays the model load that every N-worker run pays in its workers."""
    from semantic_jpeg.onnx_models import gaze_model

    gaze_model.set_default_gaze_model_threads(threads)
    gaze_model._default = None  # bench only: the module keeps one shared instance


def run_pool(fn, paths, jobs, threads=None):
    if jobs == 1 and fn is ours_item:
        _reload_default_model(threads)
    start, cpu = time.perf_counter(), cpu_seconds()
    out = [value for _, _, value, ok in WorkerPool(fn, jobs=jobs).run(paths) if ok or _raise(value)]
    return time.perf_counter() - start, out, cpu_seconds() - cpu


def pool_row(codec, how, jobs, seconds, cpu, out, in_mb) -> dict:
    """A throughput row of a pool run; ``out`` is its [(input bytes, JPEG)] list."""
    out_mb = sum(len(d) for _, d in out) / 1e6
    row = {"codec": codec, "how": how, "jobs": jobs, "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
           "images_per_s": round(len(out) / seconds, 3), "mb_in_per_s": round(in_mb / seconds, 3),
           "mb_out_per_s": round(out_mb / seconds, 3)}
    print(row)
    return row


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


# Ray Data pipelines (the documented folder example): "documented" is docs/scaling.md's (the actors write the
# files), "write step" the same with a separate write_jpegs step, "autoscaling pool" an earlier one (an actor
# pool of 1 to N actors of one CPU each, read and write tasks of one CPU each, Ray's default read blocks)
def ray_pipeline(config: str, src: str, dst: str, jobs: int):
    import ray

    from semantic_jpeg.ray import SemanticJpegEncoder, write_jpegs

    if config == "autoscaling pool":
        ds = ray.data.read_images(src, mode="RGB", include_paths=True)
        ds = ds.map_batches(SemanticJpegEncoder, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=jobs),
                            batch_size=4)
        return ds.map_batches(write_jpegs, fn_kwargs={"root": src, "out": dst}, batch_size=16)
    n_files = sum(len(files) for _, _, files in os.walk(src))
    ds = ray.data.read_images(src, mode="RGB", include_paths=True, num_cpus=0.25,
                              override_num_blocks=max(2 * jobs, n_files // 32))
    if config == "batched maps":  # the GPU layout: one actor maps batches (on the GPU when there is one)
        from semantic_jpeg.ray import SaliencyMapper
        gpu = _gpu_for_ray()
        ds = ds.map_batches(SaliencyMapper, compute=ray.data.ActorPoolStrategy(size=1), batch_size=16,
                            fn_constructor_kwargs={"intra_op_num_threads": None if gpu else 1},
                            **({"num_gpus": 1} if gpu else {"num_cpus": 0.5}))
        return ds.map_batches(SemanticJpegEncoder, fn_constructor_kwargs={"root": src, "out": dst,
                                                                          "saliency_column": "saliency"},
                              compute=ray.data.ActorPoolStrategy(size=jobs), num_cpus=0.5, batch_size=8)
    if config == "write step":  # the same with a separate write_jpegs step (the bytes go through the object store)
        ds = ds.map_batches(SemanticJpegEncoder, compute=ray.data.ActorPoolStrategy(size=jobs), num_cpus=0.5,
                            batch_size=8)
        return ds.map_batches(write_jpegs, fn_kwargs={"root": src, "out": dst}, batch_size=None, num_cpus=0.25)
    return ds.map_batches(SemanticJpegEncoder, fn_constructor_kwargs={"root": src, "out": dst},
                          compute=ray.data.ActorPoolStrategy(size=jobs), num_cpus=0.5, batch_size=8)


def _gpu_for_ray() -> bool:
    """onnxruntime can use CUDA here and Ray sees a GPU: the "batched maps" pipeline puts its mapper there."""
    import onnxruntime
    import ray

    return ("CUDAExecutionProvider" in onnxruntime.get_available_providers()
            and ray.cluster_resources().get("GPU", 0) > 0)


# "batched maps": maps made in batches by one SaliencyMapper actor (on the GPU when there is one; on the CPU
# the maps, and so the bytes, are those of the default map), encoders taking them from the saliency column
RAY_CONFIGS = ("documented", "write step", "autoscaling pool", "batched maps")  # the first is timed end to end
PINNED = "WorkerPool, 1 worker, 1 onnxruntime thread"


def plain_and_ray(sets: dict, jobs: int, repeats: int, tmp: Path) -> dict:
    """Throughput of semantic JPEG (default map and options) on each image set (name -> folder of PNGs): the
    worker pool at 1 and ``jobs`` workers (start-up included) and the Ray Data pipelines on ``ray.init(num_cpus=
    jobs)``, interleaved (so a change in the machine's load hits all), each the fastest of ``repeats`` runs.
    Steady state: the marginal rate between the smallest and the largest set (start-up cancels out). End to end
    (Ray): ``ray.init`` + the session's first run of the smallest set. Also checks Ray's bytes against the pool's
    (``semantic_jpeg.encode``)."""
    import ray

    names = sorted(sets, key=lambda k: len(list(Path(sets[k]).glob("*.png"))))
    files = {k: sorted(str(p) for p in Path(sets[k]).glob("*.png")) for k in names}
    # (label, workers, onnxruntime threads of a 1-worker run): the single process with onnxruntime's default
    # threads (the "1 worker" every speed-up is relative to), N workers, and one worker running as each of the N
    # workers and each Ray actor does (1 thread: the per-worker baseline)
    pools = [("WorkerPool, 1 worker", 1, None), *([(f"WorkerPool, {jobs} workers", jobs, None)] if jobs > 1 else []),
             (PINNED, 1, 1)]
    plain = {(label, k): [] for label, _, _ in pools for k in names}
    pool_bytes = {}
    for _ in range(repeats):
        for label, j, threads in pools:
            for k in names:
                seconds, out, _ = run_pool(ours_item, files[k], j, threads=threads)
                plain[(label, k)].append(seconds)
                pool_bytes[k] = [d for _, d in out]
    _reload_default_model(None)
    loads = [os.getloadavg()]
    start = time.perf_counter()
    ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    ray.data.DataContext.get_current().enable_progress_bars = False
    timings = {(c, k): [] for c in RAY_CONFIGS for k in names}
    identical = {}
    try:
        for _ in range(repeats + 1):  # the first round also starts Ray's worker processes
            for config in RAY_CONFIGS:
                for k in names:
                    dst = tmp / f"ray_{len(timings[(config, k)])}_{config.replace(' ', '_')}_{k}"
                    start = time.perf_counter()
                    rows = ray_pipeline(config, sets[k], str(dst), jobs).select_columns(["output"]).take_all()
                    timings[(config, k)].append(time.perf_counter() - start)
                    by_name = {Path(r["output"]).stem: Path(r["output"]).read_bytes() for r in rows}
                    identical[config] = identical.get(config, True) and (
                        [by_name[Path(p).stem] for p in files[k]] == pool_bytes[k])
    finally:
        ray.shutdown()
    loads.append(os.getloadavg())
    small, large = names[0], names[-1]
    counts = {k: len(files[k]) for k in names}
    rows = []
    for how, runs in [(h, {k: plain[(h, k)] for k in names}) for h in dict.fromkeys(h for h, _ in plain)] + \
            [(f"Ray Data ({c}), ray.init(num_cpus={jobs})", {k: timings[(c, k)][1:] for k in names})
             for c in RAY_CONFIGS]:
        best_s = {k: min(v) for k, v in runs.items()}
        row = {"how": how, **{f"seconds_{k}": round(best_s[k], 3) for k in names},
               **{f"images_per_s_{k}": round(counts[k] / best_s[k], 3) for k in names},
               "steady_images_per_s": round((counts[large] - counts[small]) / (best_s[large] - best_s[small]), 3)}
        if how.startswith("Ray"):
            config = how[len("Ray Data ("):how.index(")")]
            row["identical_bytes"] = identical[config]
            if config == RAY_CONFIGS[0]:  # the session's first run: Ray starts its worker processes
                first = timings[(config, small)][0]
                row.update({"first_run_seconds_" + small: round(first, 3),
                            "end_to_end_images_per_s_" + small: round(counts[small] / (init_s + first), 3)})
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["speedup_vs_1_worker"] = {k: round(base[f"seconds_{k}"] / row[f"seconds_{k}"], 3) for k in names}
        row["steady_speedup_vs_1_worker"] = round(row["steady_images_per_s"] / base["steady_images_per_s"], 3)
    return {"sets": counts, "jobs": jobs, "repeats": repeats, "ray_init_seconds": round(init_s, 3), "rows": rows,
            "load_average_before_after_ray": loads}


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


def ray_section(paths: list[str], args, tmp: Path) -> dict:
    """The worker pool against Ray Data on the photos and on them repeated ``--ray-repeat`` times."""
    sets = {str(len(paths)): str(Path(args.data).resolve())}
    if args.ray_repeat > 1:
        many = tmp / "repeated"
        many.mkdir()
        for r in range(args.ray_repeat):
            for p in paths:
                os.symlink(p, many / f"r{r}_{Path(p).name}")
        sets[str(len(paths) * args.ray_repeat)] = str(many)
    section = plain_and_ray(sets, args.jobs, args.repeats, tmp)
    for row in section["rows"]:
        print(row)
    return section


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/kodak"), help="folder of PNG photos")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="N: workers of the parallel runs")
    parser.add_argument("--repeats", type=int, default=3, help="runs per timing (the fastest is kept)")
    parser.add_argument("--rss-images", type=int, default=1000, help="M: inputs of the large memory run")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray Data measurement")
    parser.add_argument("--ray-only", action="store_true",
                        help="measure only the worker pool against Ray Data (on the photos and on them repeated) and "
                             "update that section of existing results")
    parser.add_argument("--ray-repeat", type=int, default=4,
                        help="the larger set of the Ray comparison: the photos repeated this many times")
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
    if args.ray_only:
        previous = json.loads((Path(args.out) / "batch_throughput.json").read_text())
        previous["throughput"] = [r for r in previous["throughput"] if not r["how"].startswith("Ray")]
        previous.pop("ray_identical_bytes", None)
        with tempfile.TemporaryDirectory(prefix="bench_batch_") as tmp:
            previous["ray"] = ray_section(paths, args, Path(tmp))
        previous["ray"]["command"] = results["command"]
        write(previous, Path(args.out))
        return 0

    # N workers first: this process has not imported onnxruntime yet, so the workers are forked (as the command
    # line's are) and their CPU time is counted; the 1-worker runs then load the model in this process
    bytes_by_jobs = {}
    for name, fn in CODECS.items():
        for jobs in sorted({1, n}, reverse=True):
            seconds, out, cpu = best(lambda fn=fn, jobs=jobs: run_pool(fn, paths, jobs), args.repeats)
            results["throughput"].append(pool_row(name, "WorkerPool", jobs, seconds, cpu, out, in_mb))
            if fn is ours_item:
                bytes_by_jobs[jobs] = [d for _, d in out]
    # one worker as the pool's workers run (onnxruntime pinned to 1 thread): the per-worker scaling, where the
    # row above gives the single process the machine's threads for its maps
    seconds, out, cpu = best(lambda: run_pool(ours_item, paths, 1, threads=1), args.repeats)
    _reload_default_model(None)
    results["throughput"].append(pool_row("semantic JPEG (default)", PINNED, 1, seconds, cpu, out, in_mb))
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
            results["ray"] = ray_section(paths, args, tmp)
            results["ray"]["command"] = results["command"]

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
                  f"command line: {results['cli_identical_bytes_across_jobs']}."]
    pinned = one.get(("semantic JPEG (default)", PINNED))
    pool_n = [r for r in rows if r["codec"] == "semantic JPEG (default)" and r["how"] == "WorkerPool" and r["jobs"] > 1]
    if pinned and pool_n:
        lines += ["", f"Per-worker scaling: {pool_n[0]['jobs']} pool workers give "
                      f"{pinned['seconds'] / pool_n[0]['seconds']:.2f}x one worker that runs as they do (onnxruntime "
                      "on 1 thread). A single process (`jobs=1`, `--jobs 1`) gives its maps all of onnxruntime's "
                      "threads, which is why N workers gain less over it."]
    if "ray" in results:
        lines += ray_lines(results["ray"])
    rss = results["peak_rss"]
    lines += ["", f"Peak resident memory of `semantic-jpeg encode --jobs {rss['jobs']}` (the command and its "
                  "workers summed, sampled every 50 ms):", "", "| inputs | peak RSS (MiB) | s |", "|---:|---:|---:|"]
    for count, r in rss["runs"].items():
        lines.append(f"| {count} | {r['peak_rss_mb']} | {r['seconds']} |")
    lines += ["", f"Ratio {rss['ratio']} (large run / 10-image run)."]
    (out / "batch_throughput.md").write_text("\n".join(lines) + "\n")


def ray_lines(ray: dict) -> list[str]:
    sets = list(ray["sets"])
    small = sets[0]
    (load0, load1) = ray["load_average_before_after_ray"]
    lines = ["", "## Ray Data against the worker pool", "",
             f"`{ray['command']}`: semantic JPEG (default map and options), sets of {' and '.join(sets)} images (the "
             f"photos, and the photos repeated), {ray['jobs']} CPUs, each time the fastest of {ray['repeats']} runs, "
             "all runs interleaved. Pool: decode + encode, worker start-up included. Ray Data: the folder example of "
             "docs/scaling.md (read_images in blocks of about 32 images, SemanticJpegEncoder actors writing the "
             "files; \"write step\": the same with a separate write_jpegs step; \"batched maps\": one "
             "SaliencyMapper actor making the maps in batches, on the GPU when there is one, for the encoder "
             "actors), actor start-up and model loading "
             "included in every run (a Dataset starts its own actors), `ray.init` not included "
             f"({ray['ray_init_seconds']} s). Steady state: ({sets[-1]} - {small}) images / (time of {sets[-1]} - "
             f"time of {small}), so start-up cancels out. Load average (1, 5, 15 min) before / after the Ray runs: "
             f"{tuple(round(x, 2) for x in load0)} / {tuple(round(x, 2) for x in load1)} on {ray['jobs']} CPUs "
             "(the machine was shared with other jobs).", "",
             "| how | " + " | ".join(f"{k} images: s | images/s | vs 1 worker" for k in sets)
             + " | steady state images/s | vs 1 worker |",
             "|---|" + "---:|---:|---:|" * len(sets) + "---:|---:|"]
    for r in ray["rows"]:
        cells = " | ".join(f"{r['seconds_' + k]} | {r['images_per_s_' + k]} | {r['speedup_vs_1_worker'][k]:.2f}x"
                           for k in sets)
        lines.append(f"| {r['how']} | {cells} | {r['steady_images_per_s']} | {r['steady_speedup_vs_1_worker']:.2f}x |")
    lines.append("")
    pinned = next((r for r in ray["rows"] if r["how"] == PINNED), None)
    if pinned:
        lines += [f"Against one worker that runs as each pool worker and each Ray actor does ({PINNED}, steady "
                  f"state {pinned['steady_images_per_s']} images/s): "
                  + "; ".join(f"{r['how']} {r['steady_images_per_s'] / pinned['steady_images_per_s']:.2f}x"
                              for r in ray["rows"] if r is not pinned and r is not ray["rows"][0]) + ".", ""]
    for r in ray["rows"]:
        if "identical_bytes" in r:
            lines.append(f"- {r['how']}: bytes identical to `semantic_jpeg.encode`: {r['identical_bytes']}."
                         + (f" End to end, `ray.init` + the session's first run of {small} images "
                            f"({r['first_run_seconds_' + small]} s): {r['end_to_end_images_per_s_' + small]} images/s."
                            if "first_run_seconds_" + small in r else ""))
    return lines


if __name__ == "__main__":
    sys.exit(main())
