"""``semantic-jpeg encode``: semantic-encode images from the command line."""
import os
import sys

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "encode", help="semantic-encode images to JPEG",
        description="Encode images as standard JPEGs whose salient regions keep their detail. Metadata (EXIF, "
                    "ICC profile) of the inputs is kept unless --strip is given.")
    p.add_argument("inputs", nargs="*", help="input image files")
    p.add_argument("--sample", choices=SAMPLES, help="encode a sample image bundled with scikit-image")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input) or folder (several inputs; created if missing)")
    p.add_argument("--levels", type=int, default=5, help="saliency levels k (default 5)")
    p.add_argument("--quality-range", type=float, nargs=2, default=(30, 70), metavar=("QL", "QH"),
                   help="quality of the least and most salient level (default 30 70)")
    p.add_argument("--quality", type=float, help="final quality Q_f (default QH)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--target-size", type=int, help="target file size in bytes (met within 1%%)")
    size.add_argument("--match-jpeg-quality", type=float, metavar="Q",
                      help="match the size of a plain JPEG at quality Q (within 1%%)")
    p.add_argument("--mode", choices=("dct", "mosaic"), default="dct", help="encoder mode (default dct)")
    p.add_argument("--saliency-map", help="use this greyscale image as the map instead of the model")
    p.add_argument("--subsampling", choices=("4:4:4", "4:2:2", "4:2:0"), default="4:2:0", help="chroma subsampling")
    p.add_argument("--progressive", action="store_true", help="progressive JPEG (default: baseline)")
    p.add_argument("--optimize", action="store_true", help="optimised Huffman tables")
    p.add_argument("--strip", action="store_true", help="do not copy EXIF / ICC profile from the input")
    p.add_argument("--heatmap", action="store_true",
                   help="also write OUTPUT.heatmap.png: the saliency map overlaid on the image")
    p.set_defaults(func=run)


def _load_inputs(args):
    if args.sample:
        from skimage import data  # optional: pip install "semantic_jpeg[examples]"
        from PIL import Image
        yield f"{args.sample}.png", Image.fromarray(getattr(data, args.sample)())
    from PIL import Image
    for path in args.inputs:
        with Image.open(path) as im:
            im.load()
            yield path, im


def run(args) -> int:
    import numpy as np
    from PIL import Image, UnidentifiedImageError
    from tqdm import tqdm

    from .encoder import encode
    from .heatmap import overlay

    n = len(args.inputs) + bool(args.sample)
    if n == 0:
        print("semantic-jpeg encode: give input files or --sample", file=sys.stderr)
        return 2
    if n > 1 or os.path.isdir(args.output):
        os.makedirs(args.output, exist_ok=True)
    saliency = None
    if args.saliency_map:
        if n > 1:
            print("--saliency-map applies to a single input", file=sys.stderr)
            return 2
        try:
            with Image.open(args.saliency_map) as m:
                saliency = m.convert("L")
        except (OSError, UnidentifiedImageError) as exc:
            print(f"--saliency-map: {exc}", file=sys.stderr)
            return 1
    rows = []
    try:
        inputs = list(_load_inputs(args))
    except (OSError, UnidentifiedImageError) as exc:
        print(f"cannot read input: {exc}", file=sys.stderr)
        return 1
    for path, im in tqdm(inputs, desc="encoding", unit="image", disable=n < 2):
        out = args.output if not os.path.isdir(args.output) else os.path.join(
            args.output, os.path.splitext(os.path.basename(path))[0] + ".jpg")
        options = {} if args.strip else {k: im.info[k] for k in ("exif", "icc_profile") if im.info.get(k)}
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            print(f"{path}: has alpha, composited onto white", file=sys.stderr)
            im = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im).convert("RGB")
        try:
            result = encode(im, out, saliency=saliency, levels=args.levels, quality_range=tuple(args.quality_range),
                            quality=args.quality, target_size=args.target_size,
                            match_jpeg_quality=args.match_jpeg_quality, mode=args.mode, subsampling=args.subsampling,
                            progressive=args.progressive, optimize=args.optimize, return_result=True, **options)
        except (ValueError, TypeError, OSError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        if args.heatmap:
            rgb = np.asarray(im.convert("RGB"))
            Image.fromarray(overlay(rgb, result.saliency)).save(os.path.splitext(out)[0] + ".heatmap.png")
        rows.append((path, out, os.path.getsize(path) if os.path.exists(path) else None, result))
    for path, out, in_size, r in rows:
        print(f"{path} -> {out}: {r.summary()}" + (f" (input {in_size} B)" if in_size else ""))
    return 0
