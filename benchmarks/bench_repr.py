"""RePr (Prakash et al., CVPR 2019) vs standard training of C^3(32) on CIFAR-10 images.

Data: the 10 000 decoded CIFAR-10 test images in ../shared/data/cifar10, split once (seed 0) into 8000 train /
2000 test. Equal budgets for both schemes, SGD lr 0.01 momentum 0.9, batch 128. The paper's schedule (100
epochs, S1=20, S2=10, N=3, p=30%) is scaled down to fit a shared 2-core CPU: a schedule unit is 1000
training images (1/8 pass), 8 units (one pass over the 8000 images), S1=2, S2=1, N=2, p=30%. The curves
are measured on the first 500 test images after every unit; the final accuracy on all 2000. The Table 5.1
comparison runs the same schedule with units of 500 images (half a pass), with its own standard baseline.
Seeds vary the initialisation and the batch order. Runs without and with augmentation (random crop + flip),
then the ranking-metric comparison of Table 5.1 on one seed without augmentation. Saves JSON + Markdown
results and a Figure-5.1-style plot to benchmarks/results/.

    nice python benchmarks/bench_repr.py            # defaults as committed
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from semantic_jpeg.training.data import ArrayLoader, cifar_split
from semantic_jpeg.training.fit import evaluate, fit, vanilla_convnet
from semantic_jpeg.training.plots import plot_training_curves
from semantic_jpeg.training.repr import RePr

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10/cifar10_test_jpeg_decoded.npz"
RESULTS = Path(__file__).resolve().parent / "results"


def train_once(split, *, seed: int, augment: bool, scheme: str, args, unit: int) -> dict:
    x_train, y_train, x_test, y_test = split
    torch.manual_seed(seed)
    model = vanilla_convnet(3, 32, 10, 32).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loader = ArrayLoader(x_train, y_train, args.batch, augment=augment, seed=1000 * seed,
                         samples_per_epoch=unit)
    curve_loader = ArrayLoader(x_test[:args.curve_images], y_test[:args.curve_images], 500, shuffle=False)
    repr_ = None
    if scheme != "standard":  # "METRIC" ranks over the whole network (paper), "METRIC/layer" per layer
        metric, _, scope = scheme.partition("/")
        metric_subset = ArrayLoader(x_train[:args.metric_images], y_train[:args.metric_images], 250, shuffle=False)
        repr_ = RePr(model, opt, s1=args.s1, s2=args.s2, n_rounds=args.n, prune_ratio=args.p, total=args.epochs,
                     metric=metric, scope=scope or "global", metric_data=metric_subset,
                     loss_fn=torch.nn.functional.cross_entropy, seed=seed)
    t0 = time.perf_counter()
    history = fit(model, loader, opt, args.epochs, repr_=repr_, eval_loader=curve_loader,
                  desc=f"{scheme} seed={seed} aug={int(augment)}")
    seconds = time.perf_counter() - t0
    final = evaluate(model, ArrayLoader(x_test, y_test, 500, shuffle=False))
    return {"scheme": scheme, "seed": seed, "augment": augment, "unit": unit, "seconds": seconds,
            "final_test_accuracy": final["accuracy"], "final_test_loss": final["loss"], "history": history,
            "repr_events": repr_.events if repr_ is not None else []}


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--unit", type=int, default=1000,
                        help="training images per schedule unit ('epoch' of fit/RePr); 8000 = one full pass")
    parser.add_argument("--table-unit", type=int, default=500, help="unit of the Table 5.1 comparison")
    parser.add_argument("--epochs", type=int, default=8, help="schedule units to train")
    parser.add_argument("--s1", type=int, default=2)
    parser.add_argument("--s2", type=int, default=1)
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--p", type=float, default=0.3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--metrics", nargs="*", default=["random", "weight", "activation", "apoz", "taylor", "oracle"],
                        help="extra RePr ranking metrics for the Table 5.1 comparison (seed = first seed, no aug)")
    parser.add_argument("--metric-images", type=int, default=256,
                        help="training images the data-driven metrics (activation, APoZ, Taylor, oracle) look at")
    parser.add_argument("--curve-images", type=int, default=500,
                        help="test images evaluated after every unit for the curves (the final accuracy uses all 2000)")
    parser.add_argument("--augment-modes", nargs="+", choices=["no", "yes"], default=["no", "yes"],
                        help="run the comparison without and/or with augmentation")
    parser.add_argument("--skip-table", action="store_true", help="skip the Table 5.1 metric comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "repr_cifar10")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_repr.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    split = cifar_split(args.data, n_train=8000, seed=0)
    runs = []
    out_json = args.out.with_suffix(".json")
    out_json.parent.mkdir(parents=True, exist_ok=True)

    def save():
        out_json.write_text(json.dumps({"command": command, "settings": {k: str(v) if isinstance(v, Path) else v
                                                                         for k, v in vars(args).items()},
                                        "torch": torch.__version__, "runs": runs}, indent=1))

    t_start = time.perf_counter()
    augment_modes = [mode == "yes" for mode in args.augment_modes]
    for augment in augment_modes:
        for seed in args.seeds:
            for scheme in ("standard", "ortho"):
                runs.append(train_once(split, seed=seed, augment=augment, scheme=scheme, args=args, unit=args.unit))
                save()
    table_runs = []
    for scheme in [] if args.skip_table else ["standard", "ortho"] + list(args.metrics):
        table_runs.append(train_once(split, seed=args.seeds[0], augment=False, scheme=scheme, args=args,
                                     unit=args.table_unit))
        runs.append(dict(table_runs[-1], table=True))
        save()
    wall = time.perf_counter() - t_start

    def final(scheme, augment, seed=None, table=False):
        return [r["final_test_accuracy"] * 100 for r in runs if r["scheme"] == scheme and r["augment"] == augment
                and (seed is None or r["seed"] == seed) and r.get("table", False) == table]

    lines = ["# RePr vs standard, C3(32), CIFAR-10 images (8000 train / 2000 test)", "",
             f"Command: `{command}`  ", f"Schedule: {args.epochs} units of {args.unit} training images "
             f"({args.epochs * args.unit / 8000:g} passes), S1={args.s1}, S2={args.s2}, N={args.n}, "
             f"p={args.p:.0%}, SGD lr {args.lr} momentum 0.9, batch {args.batch}; seeds {args.seeds}; "
             f"torch {torch.__version__}, {args.threads} CPU threads; total wall time {wall / 60:.1f} min.", "",
             "Final test accuracy (%), mean +- std over seeds:", "",
             "| augmentation | standard | RePr (ortho) | RePr - standard (paired) |", "|---|---|---|---|"]
    for augment in augment_modes:
        std_acc, repr_acc = final("standard", augment), final("ortho", augment)
        diffs = [b - a for a, b in zip(std_acc, repr_acc)]
        (ms, ss), (mr, sr), (md, sd) = mean_std(std_acc), mean_std(repr_acc), mean_std(diffs)
        lines.append(f"| {'yes' if augment else 'no'} | {ms:.2f} +- {ss:.2f} | {mr:.2f} +- {sr:.2f} | "
                     f"{md:+.2f} +- {sd:.2f} |")
    seed0 = args.seeds[0]
    lines += [] if args.skip_table else [
        "", f"Table 5.1 at a smaller budget (units of {args.table_unit} images, same schedule, "
            f"{args.epochs * args.table_unit / 8000:g} passes): RePr with each ranking metric, seed {seed0}, no "
            f"augmentation (one seed: compare differences with the seed std above):", "",
        "| ranking | test accuracy (%) | vs standard |", "|---|---|---|"]
    if not args.skip_table:
        base = final("standard", False, seed0, table=True)[0]
        for scheme in ["standard", "ortho"] + list(args.metrics):
            acc = final(scheme, False, seed0, table=True)[0]
            lines.append(f"| {scheme} | {acc:.2f} | {acc - base:+.2f} |")
        seconds = {s: statistics.mean(r["seconds"] for r in runs if r["scheme"] == s and r.get("table"))
                   for s in ["standard", "ortho"] + list(args.metrics)}
        lines += ["", "Training time per Table 5.1 run (s, ratio to standard in the same run; the machine is "
                      "shared, so these times are noisy): " +
                  ", ".join(f"{s} {t:.0f} ({t / seconds['standard']:.2f}x)" for s, t in seconds.items())]
    report = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(report)
    print(report)
    for augment in augment_modes:
        labels = (("standard", "standard"), ("RePr (ortho)", "ortho"))
        plot_training_curves(
            {label: [r["history"] for r in runs if r["scheme"] == scheme and r["augment"] == augment
                     and not r.get("table")] for label, scheme in labels},
            f"{args.out}_curves{'_aug' if augment else ''}.png",
            drop_intervals=RePr.schedule(args.s1, args.s2, args.n), xlabel=f"unit ({args.unit} training images)",
            title=f"C3(32), 8000 CIFAR-10 images, {'with' if augment else 'no'} augmentation, mean +- std over "
                  f"{len(args.seeds)} seeds; test curve on {args.curve_images} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
