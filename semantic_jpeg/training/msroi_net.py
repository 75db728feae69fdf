"""The MS-ROI network (Prakash et al., DCC 2017; thesis sec. 2.3) and its export to the runtime's ONNX format.

Architecture: [[CONV-RELU]x2 - MAXPOOL]x5. The first blocks are shared by all classes (lower-level features
learned jointly); the last blocks are class-specific: each class c owns ``class_width`` feature maps
``f_d^c`` computed by grouped convolutions (one group per class, so class maps are learned independently).

- class map (eq. 2.5, inner sum): ``M^c(x, y) = sum_d f_d^c(x, y)``
- total activation (eq. 2.4): ``Z^c = sum_{d,x,y} f_d^c(x, y)``; the logit is ``Z^c / (h w) + b_c`` (the mean
  instead of the sum keeps the logit independent of the image size)
- loss (eq. 2.6): sigmoid per class (multi-label binary cross-entropy), not a softmax
- Aug-MSROI (sec 3.6): ``a_{l+1} = f_l(a_l + Delta)``: optional noise tensors added after each shared block,
  scaled by each channel's spatial standard deviation (the runtime's ``"scale": "channel_std"`` convention).

Input: float32 NCHW RGB in [0, 1]. The exported graph (:func:`export_msroi`) reads the runtime's normalised
input ``pixel / 255`` (manifest mean 0, std 255) and outputs ``logits`` (N, K) and ``class_maps``
(N, K, ceil(H/32), ceil(W/32)); :func:`semantic_jpeg.onnx_models.load_model` then gives MS-ROI, Aug-MSROI and
R-CAM maps exactly as for the shipped model.
"""
from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

OPSET = 17
STRIDE = 32


def _block(in_channels: int, out_channels: int, groups: int = 1, first_groups: int = 1) -> nn.Sequential:
    """[CONV-RELU]x2 - MAXPOOL (ceil mode, so sizes are ceil(H/2)); ``groups`` > 1 keeps classes apart."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, groups=first_groups), nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True))


class MSROINet(nn.Module):
    """MS-ROI network: ``shared_widths`` channels of the shared blocks, then ``5 - len(shared_widths)``
    class-specific blocks with ``class_width`` maps per class."""

    def __init__(self, num_classes: int, shared_widths: Sequence[int] = (16, 32, 64), class_width: int = 4):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        widths = [*shared_widths, class_width]
        if not 1 <= len(shared_widths) <= 4 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                                    for w in widths):
            raise ValueError(f"need 1-4 shared blocks (5 blocks in all) of integer widths >= 1 and an integer "
                             f"class_width >= 1, got {tuple(shared_widths)}, {class_width!r}")
        self.num_classes, self.class_width = num_classes, class_width
        self.shared_widths = tuple(int(w) for w in shared_widths)
        widths = (3,) + self.shared_widths
        self.shared = nn.ModuleList(_block(a, b) for a, b in zip(widths[:-1], widths[1:]))
        class_channels = num_classes * class_width
        n_class_blocks = 5 - len(self.shared_widths)
        self.class_blocks = nn.ModuleList(
            _block(widths[-1] if i == 0 else class_channels, class_channels, groups=num_classes,
                   first_groups=1 if i == 0 else num_classes)  # the first reads every shared feature
            for i in range(n_class_blocks))
        self.logit_bias = nn.Parameter(torch.zeros(num_classes))
        for m in self.modules():  # He init as for VGG-style plain ReLU stacks (keeps the signal through 10 convs)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def noise_channels(self) -> list[int]:
        """Channels of the activations after each shared block (the Aug-MSROI noise points)."""
        return list(self.shared_widths)

    @property
    def noise_strides(self) -> list[int]:
        return [2 ** (i + 1) for i in range(len(self.shared_widths))]

    def class_maps(self, image: torch.Tensor, *noises: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, K), class maps (N, K, h, w)); ``noises`` (optional, one per shared block) are added
        after the shared blocks, times each channel's spatial std (Aug-MSROI)."""
        if noises and len(noises) != len(self.shared):
            raise ValueError(f"expected {len(self.shared)} noise tensors, got {len(noises)}")
        x = image
        for i, block in enumerate(self.shared):
            x = block(x)
            if noises:
                x = x + noises[i] * x.std(dim=(2, 3), keepdim=True, correction=0)
        for block in self.class_blocks:
            x = block(x)
        n, _, h, w = x.shape
        maps = x.reshape(n, self.num_classes, self.class_width, h, w).sum(dim=2)  # eq. 2.5 inner sum over d
        logits = maps.mean(dim=(2, 3)) + self.logit_bias  # eq. 2.4 (mean over x, y)
        return logits, maps

    def forward(self, image: torch.Tensor, *noises: torch.Tensor) -> torch.Tensor:
        return self.class_maps(image, *noises)[0]

    def config(self) -> dict:
        return {"num_classes": self.num_classes, "shared_widths": list(self.shared_widths),
                "class_width": self.class_width}


def msroi_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 2.6: independent sigmoid per class (multi-label BCE); targets are multi-hot or soft in [0, 1]."""
    return nn.functional.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))


def aug_msroi_class_maps(model: MSROINet, image: torch.Tensor, *, n: int = 5, input_noise: float = 0.02,
                         activation_noise: float = 0.3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Aug-MSROI in torch (sec 3.6), as the onnxruntime runtime does it: one input perturbation of one image
    (1, 3, H, W), shared, and ``n`` draws of the activation noise after every shared block, run as one batch
    (the first block runs once). Returns the mean class maps (K, h, w)."""
    if image.dim() != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image of shape (1, 3, H, W), got {tuple(image.shape)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (the perturbed copies) must be a positive int, got {n!r}")
    if not all(math.isfinite(v) and v >= 0 for v in (input_noise, activation_noise)):
        raise ValueError(f"input_noise and activation_noise must be finite and >= 0, got {input_noise!r}, "
                         f"{activation_noise!r}")
    _, _, h, w = image.shape
    image = image + torch.randn(image.shape, generator=generator).to(image) * input_noise
    noises = [torch.randn(n, c, -(-h // s), -(-w // s), generator=generator).to(image) * activation_noise
              for c, s in zip(model.noise_channels, model.noise_strides)]
    with torch.no_grad():
        return model.class_maps(image, *noises)[1].mean(dim=0)


class _ExportModule(nn.Module):
    def __init__(self, model: MSROINet):
        super().__init__()
        self.model = model

    def forward(self, image, *noises):
        return self.model.class_maps(image, *noises)


def check_model_name(name: str) -> None:
    """A model's name is the stem of its files: a plain file name (no folder, not hidden), else ValueError."""
    if not name or name != Path(name).name or name.startswith("."):
        raise ValueError(f"name must be a plain file name stem (no folder, not hidden), got {name!r}")


def export_msroi(model: MSROINet, out_dir: str | Path, *, class_names: Sequence[str], name: str = "msroi_net",
                 version: str = "1.0.0", description: str = "", source: dict | None = None,
                 defaults: dict | None = None, sample_hw: tuple[int, int] = (64, 96)) -> dict:
    """Writes ``NAME.onnx``, ``NAME_classes.tsv`` and the manifest ``NAME.json`` (the runtime's format, via
    :func:`semantic_jpeg.onnx_models.manifest.write_manifest`) into ``out_dir``; returns the manifest.
    Load the result with ``semantic_jpeg.onnx_models.load_model(out_dir / "NAME.json")``."""
    import onnx

    from semantic_jpeg.onnx_models.manifest import write_manifest

    check_model_name(name)
    if len(class_names) != model.num_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {model.num_classes} classes")
    if any("\t" in c or "\n" in c or not c for c in class_names):
        raise ValueError("class names must be non-empty and contain no tabs or newlines")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    h, w = sample_hw
    sample = [torch.zeros(1, 3, h, w)] + [torch.zeros(1, c, -(-h // s), -(-w // s))
                                          for c, s in zip(model.noise_channels, model.noise_strides)]
    noise_names = [f"noise_s{s}" for s in model.noise_strides]
    names = ["image"] + noise_names
    dynamic = {n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in names}
    dynamic.update({"logits": {0: "batch"}, "class_maps": {0: "batch", 2: "map_height", 3: "map_width"}})
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(_ExportModule(model), tuple(sample), buffer, dynamo=False, opset_version=OPSET,
                          input_names=names, output_names=["logits", "class_maps"], dynamic_axes=dynamic)
    onnx_path = out_dir / f"{name}.onnx"
    onnx_path.write_bytes(buffer.getvalue())
    onnx.checker.check_model(str(onnx_path))
    table = out_dir / f"{name}_classes.tsv"
    table.write_text("# classes of an MS-ROI network trained by semantic_jpeg.training\nindex\twnid\tname\n" +
                     "".join(f"{i}\t\t{c}\n" for i, c in enumerate(class_names)), encoding="utf-8")
    settings = {"working_size": 224, "grouping": "fine", "top_k": min(5, model.num_classes), "aug_n": 5,
                "input_noise": 0.02, "activation_noise": 0.3, "classify_size": 224}
    settings.update(defaults or {})
    return write_manifest(
        out_dir / f"{name}.json", name=name, version=version,
        description=description or "MS-ROI network (Prakash et al., DCC 2017) trained with semantic_jpeg.training",
        onnx_file=onnx_path,
        input_spec={"name": "image", "layout": "NCHW", "channels": "RGB", "dtype": "float32", "mean": 0.0,
                    "std": 255.0, "size_multiple": STRIDE},
        noise_inputs=[{"name": n, "channels": c, "stride": s, "scale": "channel_std"}
                      for n, c, s in zip(noise_names, model.noise_channels, model.noise_strides)],
        outputs={"logits": "logits", "class_maps": "class_maps", "feature_stride": STRIDE},
        cam={"type": "class_maps"},
        classes={"count": model.num_classes, "table": table, "groupings": ["fine"]},
        defaults=settings,
        source={"architecture": "msroi-net", "config": model.config(), **(source or {})},
        producer={"command": "semantic_jpeg.training.msroi_net.export_msroi", "torch": torch.__version__,
                  "onnx": onnx.__version__, "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)"},
    )
