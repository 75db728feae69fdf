"""Supplement to bench_repr.py: RePr with the ortho metric ranked per layer ("ortho/layer") instead of over
the whole network, same data, schedule and seeds as the main comparison (no augmentation), and how many
filters each scheme drops per layer. Reason: with global ranking, eq. 5.2 scores of a layer whose filters
live in a low-dimensional space (C3(32)'s first layer: 32 filters of 3x3x3 = 27 values, more filters than
dimensions) are systematically larger, so global ranking drops mostly first-layer filters.

    nice python benchmarks/bench_repr_scope.py
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path

import torch
from bench_repr import DEFAULT_DATA, RESULTS, mean_std, train_once  # noqa: E402 (run from benchmarks/ or root)

from semantic_jpeg.training.data import ArrayLoader, cifar_split
from semantic_jpeg.training.fit import fit, vanilla_convnet
from semantic_jpeg.training.repr import RePr


def global_first_drop(split, seed: int, settings) -> list[int]:
    """Filters per layer that global ortho ranking drops at the first drop of the main run with ``seed``
    (replays its first S1 units: same init, same batches)."""
    x_train, y_train, _, _ = split
    torch.manual_seed(seed)
    model = vanilla_convnet(3, 32, 10, 32).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=0.9)
    loader = ArrayLoader(x_train, y_train, settings.batch, seed=1000 * seed, samples_per_epoch=settings.unit)
    fit(model, loader, opt, settings.s1, progress=False)
    return [int(m.sum()) for m in RePr(model, opt, s1=1, s2=1, n_rounds=1, prune_ratio=settings.p).select()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--main-results", type=Path, default=RESULTS / "repr_cifar10.json",
                        help="bench_repr.py results whose settings and standard/ortho runs are reused")
    parser.add_argument("--out", type=Path, default=RESULTS / "repr_cifar10_scope")
    args = parser.parse_args(argv)
    main_results = json.loads(args.main_results.read_text())
    settings = argparse.Namespace(**main_results["settings"])
    torch.set_num_threads(settings.threads)
    split = cifar_split(args.data, n_train=8000, seed=0)
    runs = [train_once(split, seed=seed, augment=False, scheme="ortho/layer", args=settings, unit=settings.unit)
            for seed in settings.seeds]
    command = "python benchmarks/bench_repr_scope.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "runs": runs}, indent=1))
    reused = [r for r in main_results["runs"] if not r["augment"] and not r.get("table")]
    for r in reused:
        if r["scheme"] == "ortho" and not r.get("repr_events"):
            r["repr_events"] = [{"dropped_per_layer": global_first_drop(split, r["seed"], settings)}]

    def accs(scheme, pool):
        return [r["final_test_accuracy"] * 100 for r in pool if r["scheme"] == scheme]

    std = accs("standard", reused)
    lines = ["# RePr ortho ranking: whole network (paper) vs per layer", "",
             f"Command: `{command}` (reuses the standard and ortho runs of `{main_results['command']}`)", "",
             "Final test accuracy (%), no augmentation, mean +- std over seeds "
             f"{settings.seeds}; same schedule as the main comparison:", "",
             "| scheme | accuracy | - standard (paired) | filters dropped per layer at the 1st drop (mean) |",
             "|---|---|---|---|"]
    for label, scheme, pool in (("standard", "standard", reused), ("RePr ortho, global", "ortho", reused),
                                ("RePr ortho, per layer", "ortho/layer", runs)):
        acc = accs(scheme, pool)
        (m, s), (dm, ds) = mean_std(acc), mean_std([a - b for a, b in zip(acc, std)])
        drops = [r["repr_events"][0]["dropped_per_layer"] for r in pool if r["scheme"] == scheme
                 and r.get("repr_events")]
        per_layer = " / ".join(f"{statistics.mean(col):.1f}" for col in zip(*drops)) if drops else "-"
        lines.append(f"| {label} | {m:.2f} +- {s:.2f} | {dm:+.2f} +- {ds:.2f} | {per_layer} |")
    report = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
