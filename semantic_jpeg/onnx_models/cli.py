"""``semantic-jpeg maps`` (write saliency map PNGs / overlays) and ``semantic-jpeg predict`` (top-k classes).
onnxruntime is imported only when a subcommand runs.

An input that cannot be read (missing, a folder, not an image, over Pillow's decompression-bomb limit) is
reported in one line and skipped; the exit status is then 1, with a count. ``maps`` plans its output names
first: it never replaces an input, refuses two inputs that give the same PNG name, and replaces existing PNGs
only with ``--overwrite``."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from semantic_jpeg._cliutil import describe_error, error, write_file

METHODS = ("msroi", "aug_msroi", "rcam")
MAX_WORKING_SIZE = 4096  # maps of far larger inputs exhaust the memory (a 64000 one was killed)
DEFAULT_TOP_K = 5


def register(subparsers) -> None:
    maps = subparsers.add_parser("maps", help="write MS-ROI / Aug-MSROI / R-CAM saliency maps of images as PNG")
    maps.add_argument("images", nargs="+", type=Path, help="input image files")
    maps.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder (default: .)")
    maps.add_argument("--overwrite", action="store_true", help="replace PNG files that already exist")
    maps.add_argument("-m", "--method", choices=METHODS + ("all",), default="msroi",
                      help="which map (all: one PNG each)")
    maps.add_argument("--overlay", action="store_true", help="also write the map blended over the image")
    maps.add_argument("--working-size", type=int, default=None,
                      help=f"network input's longer side, a multiple of 32 up to {MAX_WORKING_SIZE} "
                           "(default: the model's own)")
    maps.add_argument("--seed", type=int, default=0, help="Aug-MSROI seed")
    _add_model_arguments(maps)
    maps.set_defaults(func=_run_maps)

    predict = subparsers.add_parser("predict", help="top-k ImageNet classes of images")
    predict.add_argument("images", nargs="+", type=Path, help="input image files")
    predict.add_argument("-k", type=int, default=None,
                         help="classes listed per image (default: 5, or all classes of a model with fewer)")
    _add_model_arguments(predict)
    predict.set_defaults(func=_run_predict)


def _add_model_arguments(parser) -> None:
    parser.add_argument("--model", default="efficientnet_lite0_cam", help="shipped name or manifest path")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime intra-op threads (default: onnxruntime's, all cores)")


def _load(args):
    from semantic_jpeg.onnx_models import load_model

    try:
        return load_model(args.model, intra_op_num_threads=args.threads)
    except ValueError:
        if _is_gaze_manifest(args.model):
            raise ValueError(f"--model {args.model} is a fixation (gaze) model, not a CAM classifier: maps and "
                             "predict need a CAM model (the default efficientnet_lite0_cam); gaze maps come from "
                             "semantic_jpeg.saliency_map(image) in Python, whose default method is gaze") from None
        raise


def _is_gaze_manifest(model: str) -> bool:
    """Whether ``--model`` (a shipped name, a manifest or its ``.onnx``) names a gaze model's manifest."""
    from semantic_jpeg.onnx_models.gaze_model import FORMAT, PACKAGE_DIR

    path = Path(model)
    path = path.with_suffix(".json") if path.suffix in (".json", ".onnx") else PACKAGE_DIR / f"{model}.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def overlay(rgb, saliency, alpha: float = 0.5):
    """RGB uint8 image with the map blended in as a black-red-yellow heat colour (PIL image)."""
    import numpy as np
    from PIL import Image

    heat = np.stack([np.clip(3 * saliency, 0, 1), np.clip(3 * saliency - 1, 0, 1),
                     np.clip(3 * saliency - 2, 0, 1)], axis=2)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * 255 * heat
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def _read_rgb(path):
    from PIL import Image

    from semantic_jpeg.image_input import flatten_alpha
    from semantic_jpeg.onnx_models.image_input import to_rgb_array

    with Image.open(path) as image:
        return to_rgb_array(flatten_alpha(image))  # files with alpha: over white, as `encode` on the command line


def _summary(prog, failures, total) -> int:
    if failures:
        print(f"{prog}: {failures} of {total} image(s) failed", file=sys.stderr)
        return 1
    return 0


def _run_maps(args) -> int:
    import io

    import numpy as np
    from PIL import Image

    prog = "semantic-jpeg maps"
    if args.out.exists() and not args.out.is_dir():
        error(prog, f"output folder {args.out} is an existing file")
        return 2
    methods = METHODS if args.method == "all" else (args.method,)
    plan: list = []
    seen: dict = {}
    for path in args.images:  # every output name before any work: collisions, inputs, existing files
        targets = []
        for method in methods:
            targets.append((method, False, args.out / f"{path.stem}_{method}.png"))
            if args.overlay:
                targets.append((method, True, args.out / f"{path.stem}_{method}_overlay.png"))
        for _, _, target in targets:
            key = os.path.realpath(target)
            if key in seen:
                error(prog, f"{seen[key]} and {path} would both be written to {target}; rename one of them")
                return 2
            seen[key] = path
        plan.append((path, targets))
    for path in args.images:
        if os.path.realpath(path) in seen:
            error(prog, f"{path} is an input: refusing to write over it; choose another --out folder")
            return 2
    existing = [str(t) for _, targets in plan for _, _, t in targets if t.exists()]
    if existing and not args.overwrite:
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        error(prog, f"output file(s) exist: {', '.join(existing[:3])}{more}; pass --overwrite to replace them")
        return 2
    model = _load(args)
    multiple = model.manifest["input"]["size_multiple"]
    if args.working_size is not None and not (
            multiple <= args.working_size <= MAX_WORKING_SIZE and args.working_size % multiple == 0):
        error(prog, f"--working-size must be a multiple of {multiple} from {multiple} to {MAX_WORKING_SIZE}, "
                    f"got {args.working_size}")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    try:
        for path, targets in plan:
            try:
                rgb = _read_rgb(path)
                for method, is_overlay, target in targets:
                    options = {"working_size": args.working_size}
                    if method == "aug_msroi":
                        options["seed"] = args.seed
                    if not is_overlay:
                        saliency = getattr(model, f"{method}_map")(rgb, **options)
                        image = Image.fromarray((saliency * 255 + 0.5).astype(np.uint8))
                    else:
                        image = overlay(rgb, saliency)
                    buffer = io.BytesIO()
                    image.save(buffer, "PNG")
                    write_file(str(target), buffer.getvalue(), overwrite=args.overwrite)
                    print(target)
            except Exception as exc:  # noqa: BLE001 -- one bad input is reported, the others go on
                if not isinstance(exc, (OSError, ValueError, MemoryError)) and \
                        type(exc).__name__ != "DecompressionBombError":
                    raise
                failures += 1
                print(f"{path}: {describe_error(exc, path)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the PNG files listed above are complete", file=sys.stderr)
        return 130
    return _summary(prog, failures, len(plan))


def _run_predict(args) -> int:
    prog = "semantic-jpeg predict"
    model = _load(args)
    classes = len(model.class_names)
    k = min(DEFAULT_TOP_K, classes) if args.k is None else args.k
    if not 1 <= k <= classes:
        error(prog, f"-k must be from 1 to the model's {classes} classes, got {k}")
        return 2
    failures = 0
    for path in args.images:
        try:
            top = model.predict_topk(_read_rgb(path), k)
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, (OSError, ValueError, MemoryError)) and \
                    type(exc).__name__ != "DecompressionBombError":
                raise
            failures += 1
            print(f"{path}: {describe_error(exc, path)}", file=sys.stderr)
            continue
        print(path)
        for index, name, prob in top:
            print(f"  {index:4d} {name:30s} {prob:.4f}")
    return _summary(prog, failures, len(args.images))
