"""Saliency maps from ONNX CAM models run with onnxruntime (no torch): MS-ROI (Prakash et al., DCC 2017; thesis
eq. 2.4-2.5), Aug-MSROI (Prakash et al., DCC 2018; thesis sec. 3.6) and R-CAM (Prakash et al., CVPR 2018; thesis
sec. 4.6.1, eq. 4.4-4.5), plus top-k ImageNet predictions.

    >>> from semantic_jpeg.onnx_models import default_model, load_model
    >>> model = default_model()                       # shipped EfficientNet-Lite0, shared, thread-safe
    >>> saliency = model.msroi_map(pil_or_array)      # float32 (H, W) in [0, 1], same size as the image
    >>> model.aug_msroi_map(img, n=5, seed=0); model.rcam_map(img, k=5); model.predict_topk(img, 5)

Images follow the package's input policy (:mod:`semantic_jpeg.image_input`, docs/images.md): ``PIL.Image`` or
numpy uint8 / uint16 / float-in-[0,1], HxW or HxWx3, RGB unless ``color_order="BGR"``; alpha is refused
(``image_input.flatten_alpha`` composites it). Maps cover the whole frame for any
aspect ratio: the frame is resized (not cropped) so its longer side is ``working_size`` (multiples of 32) and
the map is resized back bilinearly.

CAM model contract (what :func:`load_model` runs; written with :func:`manifest.write_manifest`)
-----------------------------------------------------------------------------------------------
A model is an ONNX file plus a JSON manifest (same stem) holding the sha256 of every file it names.

* Input ``input.name``: float32 (N, 3, H, W), channels ``input.channels`` (RGB), value (x - mean) / std
  for pixel values x in 0..255; dynamic N, H, W; H and W are multiples of ``input.size_multiple`` (required,
  and checked by ``CamModel.forward``, when ``input.size_multiple_required`` is true: a graph whose padding was
  folded into its convolutions, as the shipped one's, is exact only on such sides).
* Optional ``noise_inputs`` (Aug-MSROI): each float32 (M, channels, ceil(H/stride), ceil(W/stride)), added
  inside the graph to an intermediate activation (``scale: "channel_std"``: multiplied by that activation's
  per-channel spatial std first) with broadcasting, so M = N or, for one image (N = 1), any M: the outputs
  then have M rows. Zeros must give the unperturbed network.
* Output ``outputs.logits``: float32 (N, K) class scores (softmax gives probabilities).
* ``cam.type == "linear"`` (global-average-pool + linear head, e.g. EfficientNet): output
  ``outputs.features`` (N, C, h, w) and ``cam.head_file``, a ``.npy`` float32 (K, C + 1) = [W | b]:
  CAM_c = W[c] . features + b[c]; logits = spatial mean of CAM_c.
  ``cam.type == "class_maps"`` (class-specific feature maps, e.g. the paper's MS-ROI network): output
  ``outputs.class_maps`` (N, K, h, w) giving CAM_c directly.
* ``classes``: ``count`` K and optionally ``table``: TSV with columns index, wnid, name and one column per
  coarse grouping (label per class; classes with equal labels form a coarse class). ``#`` lines are comments.
* ``defaults``: working_size, grouping, top_k, aug_n, input_noise, activation_noise, classify_size.

Shipped: ``efficientnet_lite0_cam`` (made by ``python -m semantic_jpeg.training.export``) and
``imagenet1k_classes.tsv`` (ImageNet names + WordNet 3.0 coarse groups, see its header).
"""
from semantic_jpeg.onnx_models.cam_model import (
                                                 DEFAULT_MODEL,
                                                 CamModel,
                                                 available_models,
                                                 default_model,
                                                 default_providers,
                                                 load_model,
)
from semantic_jpeg.onnx_models.manifest import ModelIntegrityError, read_manifest, write_manifest

__all__ = ["CamModel", "DEFAULT_MODEL", "ModelIntegrityError", "available_models", "default_model",
           "default_providers", "load_model", "read_manifest", "write_manifest"]
