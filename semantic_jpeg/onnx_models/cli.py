"""``semantic-jpeg maps`` (write saliency map PNGs / overlays) and ``semantic-jpeg predict`` (top-k classes).
onnxruntime is imported only when a subcommand runs."""
from __future__ import annotations

from pathlib import Path

METHODS = ("msroi", "aug_msroi", "rcam")


def register(subparsers) -> None:
    maps = subparsers.add_parser("maps", help="write MS-ROI / Aug-MSROI / R-CAM saliency maps of images as PNG")
    maps.add_argument("images", nargs="+", type=Path, help="input image files")
    maps.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder (default: .)")
    maps.add_argument("-m", "--method", choices=METHODS + ("all",), default="msroi",
                      help="which map (all: one PNG each)")
    maps.add_argument("--overlay", action="store_true", help="also write the map blended over the image")
    maps.add_argument("--working-size", type=int, default=None,
                      help="network input's longer side, a multiple of 32 (default: the model's own)")
    maps.add_argument("--seed", type=int, default=0, help="Aug-MSROI seed")
    _add_model_arguments(maps)
    maps.set_defaults(func=_run_maps)

    predict = subparsers.add_parser("predict", help="top-k ImageNet classes of images")
    predict.add_argument("images", nargs="+", type=Path, help="input image files")
    predict.add_argument("-k", type=int, default=5, help="classes listed per image")
    _add_model_arguments(predict)
    predict.set_defaults(func=_run_predict)


def _add_model_arguments(parser) -> None:
    parser.add_argument("--model", default="efficientnet_lite0_cam", help="shipped name or manifest path")
    parser.add_argument("--threads", type=int, default=None,
                        help="onnxruntime intra-op threads (default: onnxruntime's, all cores)")


def _load(args):
    from semantic_jpeg.onnx_models import load_model

    return load_model(args.model, intra_op_num_threads=args.threads)


def overlay(rgb, saliency, alpha: float = 0.5):
    """RGB uint8 image with the map blended in as a black-red-yellow heat colour (PIL image)."""
    import numpy as np
    from PIL import Image

    heat = np.stack([np.clip(3 * saliency, 0, 1), np.clip(3 * saliency - 1, 0, 1),
                     np.clip(3 * saliency - 2, 0, 1)], axis=2)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * 255 * heat
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))


def _run_maps(args) -> int:
    import numpy as np
    from PIL import Image

    from semantic_jpeg.onnx_models.image_input import to_rgb_array

    model = _load(args)
    args.out.mkdir(parents=True, exist_ok=True)
    methods = METHODS if args.method == "all" else (args.method,)
    for path in args.images:
        with Image.open(path) as image:
            rgb = to_rgb_array(image)
        for method in methods:
            options = {"working_size": args.working_size}
            if method == "aug_msroi":
                options["seed"] = args.seed
            saliency = getattr(model, f"{method}_map")(rgb, **options)
            target = args.out / f"{path.stem}_{method}.png"
            Image.fromarray((saliency * 255 + 0.5).astype(np.uint8)).save(target)
            print(target)
            if args.overlay:
                target = args.out / f"{path.stem}_{method}_overlay.png"
                overlay(rgb, saliency).save(target)
                print(target)
    return 0


def _run_predict(args) -> int:
    from PIL import Image

    model = _load(args)
    for path in args.images:
        with Image.open(path) as image:
            top = model.predict_topk(image, args.k)
        print(path)
        for index, name, prob in top:
            print(f"  {index:4d} {name:30s} {prob:.4f}")
    return 0
