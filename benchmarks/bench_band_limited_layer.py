"""Per-layer cost of band-limited FFT convolution (Dziedzic et al., ICML 2019; dissertation sec. 2.3.2, Figure 2.4)
on ResNet-18 CIFAR shapes.

Forward + backward (of a fixed random output gradient) of one 3x3 layer (default: batch 32, 64 -> 64 channels,
32x32, padding 1) for nn.Conv2d (F.conv2d, oneDNN) and BandLimitedConv2d at several compression rates, for each
backend of the complex
multiply-accumulate (C kernel "native", complex einsum "torch"). Reported against the same layer at 0%
(full spectrum, same backend) and against F.conv2d, all measured in this run:

- time: median over --reps round-robin repetitions (configurations interleaved so machine load hits all
  alike), after one warm-up each;
- peak memory, two ways: (a) the torch profiler's largest "Total Allocated" during one forward+backward
  (bytes held by torch's CPU allocator above what existed before: activations, spectra, saved tensors,
  gradients), median of --memory-runs profiled runs (it varies from run to run); (b) growth of the peak resident set
  size (VmHWM, reset through /proc/self/clear_refs) over
  one forward+backward run in a fresh subprocess.

    python benchmarks/bench_band_limited_layer.py
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from semantic_jpeg.training.band_limited import BandLimitedConv2d

RESULTS = Path(__file__).resolve().parent / "results"
DOC_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def make_layer(method: str, rate: float, channels: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    conv = nn.Conv2d(channels, channels, 3, padding=1)
    return conv if method == "conv2d" else BandLimitedConv2d.from_conv2d(conv, rate, backend=method)


def forward_backward(layer: nn.Module, x: torch.Tensor, grad_y: torch.Tensor) -> None:
    """One training step's work for the layer: forward, then backward of a given (dense) output gradient."""
    layer.zero_grad(set_to_none=True)
    x.grad = None
    layer(x).backward(grad_y)


def profiler_peak_bytes(layer, x, grad_y) -> int:
    """Largest bytes held by torch's CPU allocator during one forward+backward, above the starting point."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward_backward(layer, x, grad_y)
    peak = 0
    trace = Path(f"/tmp/bench_band_limited_{id(layer)}.json")
    prof.export_chrome_trace(str(trace))
    for event in json.loads(trace.read_text())["traceEvents"]:
        if event.get("name") == "[memory]":
            peak = max(peak, int(event["args"]["Total Allocated"]))
    trace.unlink()
    return peak


def rss_peak_growth_bytes(method: str, rate: float, batch: int, channels: int, size: int) -> int:
    """VmHWM growth over one forward+backward in a fresh interpreter (see --rss-child)."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", method, str(rate), str(batch), str(channels), str(size)],
        check=True, capture_output=True, text=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def _vm_hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_child(method: str, rate: float, batch: int, channels: int, size: int) -> None:
    torch.set_num_threads(1)
    layer = make_layer(method, rate, channels)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    grad_y = torch.randn(batch, channels, size, size)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _vm_hwm_bytes()
    forward_backward(layer, x, grad_y)
    print(_vm_hwm_bytes() - before)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75])
    parser.add_argument("--backends", nargs="+", default=["native", "torch"])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--memory-runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS / "band_limited_layer.json")
    parser.add_argument("--plot", type=Path, default=DOC_IMG / "band_limited_layer.png")
    parser.add_argument("--rss-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        m, r, b, c, s = args.rss_child
        _rss_child(m, float(r), int(b), int(c), int(s))
        return 0

    torch.set_num_threads(args.threads)
    configs = [("conv2d", 0.0)] + [(b, r) for b in args.backends for r in args.rates]
    layers = {cfg: make_layer(*cfg, channels=args.channels) for cfg in configs}
    x = torch.randn(args.batch, args.channels, args.size, args.size, requires_grad=True)
    grad_y = torch.randn(args.batch, args.channels, args.size, args.size)
    times = {cfg: [] for cfg in configs}
    for layer in layers.values():
        forward_backward(layer, x, grad_y)  # warm-up (FFT plans, oneDNN primitives)
    for _ in range(args.reps):
        for cfg, layer in layers.items():
            t0 = time.perf_counter()
            forward_backward(layer, x, grad_y)
            times[cfg].append(time.perf_counter() - t0)

    peaks = {cfg: [] for cfg in configs}  # the profiler's peak varies between runs: median of --memory-runs
    for _ in range(args.memory_runs):
        for cfg, layer in layers.items():
            peaks[cfg].append(profiler_peak_bytes(layer, x, grad_y) / 2**20)
    rows = []
    for cfg, layer in layers.items():
        method, rate = cfg
        kept = total = None
        if method != "conv2d":
            kept, total = layer.kept_coefficients((args.size, args.size))
        rows.append(dict(method=method, compress_rate=rate, kept_coefficients=kept, total_coefficients=total,
                         time_ms=1e3 * statistics.median(times[cfg]), time_ms_all=[1e3 * t for t in times[cfg]],
                         profiler_peak_mib=statistics.median(peaks[cfg]), profiler_peak_mib_all=peaks[cfg],
                         rss_peak_growth_mib=rss_peak_growth_bytes(method, rate, args.batch, args.channels,
                                                                   args.size) / 2**20))
    conv = next(r for r in rows if r["method"] == "conv2d")
    for row in rows:
        full = next((r for r in rows if r["method"] == row["method"] and r["compress_rate"] == 0.0), conv)
        for key in ("time_ms", "profiler_peak_mib", "rss_peak_growth_mib"):
            row[f"{key}_vs_same_at_0"] = row[key] / full[key]
            row[f"{key}_vs_conv2d"] = row[key] / conv[key]

    header = f"{'method':8} {'rate':>5} {'kept':>9} {'ms':>8} {'x0%':>6} {'xconv':>6} {'alloc MiB':>9} {'x0%':>6} " \
             f"{'xconv':>6} {'RSS MiB':>8} {'x0%':>6} {'xconv':>6}"
    print(header)
    for r in rows:
        kept = f"{r['kept_coefficients']}/{r['total_coefficients']}" if r["kept_coefficients"] else "-"
        print(f"{r['method']:8} {r['compress_rate']:5.2f} {kept:>9} {r['time_ms']:8.1f} "
              f"{r['time_ms_vs_same_at_0']:6.2f} "
              f"{r['time_ms_vs_conv2d']:6.2f} {r['profiler_peak_mib']:9.1f} {r['profiler_peak_mib_vs_same_at_0']:6.2f} "
              f"{r['profiler_peak_mib_vs_conv2d']:6.2f} {r['rss_peak_growth_mib']:8.1f} "
              f"{r['rss_peak_growth_mib_vs_same_at_0']:6.2f} {r['rss_peak_growth_mib_vs_conv2d']:6.2f}")
    result = dict(command="python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
                  shape=dict(batch=args.batch, in_channels=args.channels, out_channels=args.channels,
                             size=args.size, kernel=3, padding=1), threads=args.threads,
                  torch=torch.__version__, device="cpu", rows=rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.plot)
    print(f"saved {args.out} and {args.plot}")
    return 0


def plot(result, path: Path) -> None:
    """Time and peak memory relative to the full-spectrum layer, like the paper's Figure 2.4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    metrics = [("time_ms", "forward+backward time"), ("profiler_peak_mib", "peak allocated memory (torch profiler)")]
    for ax, (key, title) in zip(axes, metrics):
        for method in sorted({r["method"] for r in result["rows"]} - {"conv2d"}):
            rows = [r for r in result["rows"] if r["method"] == method]
            ax.plot([100 * r["compress_rate"] for r in rows], [100 * r[f"{key}_vs_same_at_0"] for r in rows], "o-",
                    label=f"band-limited ({method} backend)")
        conv = next(r for r in result["rows"] if r["method"] == "conv2d")
        full = next(r for r in result["rows"] if r["method"] == "native" and r["compress_rate"] == 0.0)
        ax.axhline(100 * conv[key] / full[key], color="gray", ls="--", label="F.conv2d (vs native 0%)")
        ax.set(xlabel="compression rate (%)", ylabel="% of the same layer at 0%", title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    shape = result["shape"]
    fig.suptitle(f"one 3x3 layer, batch {shape['batch']}, {shape['in_channels']}->{shape['out_channels']}, "
                 f"{shape['size']}x{shape['size']}, CPU, {result['threads']} thread(s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
