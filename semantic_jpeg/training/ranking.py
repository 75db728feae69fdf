"""Filter-importance metrics for RePr (Prakash et al., CVPR 2019; thesis sec. 5.5-5.6, Table 5.1).

Every metric returns, for each given ``nn.Conv2d``, a 1-D tensor of per-filter *importance* (one value per
output channel, higher = more important); RePr drops the lowest. Data-driven metrics read activations at the
conv's output (``feature = conv(x)``); for conv -> ReLU networks that is exactly the pre-activation of the
feature the paper ranks.

- ``ortho``: inter-filter orthogonality, eq. 5.1-5.2. Rows of ``W_l`` are the flattened filters, each
  normalised to unit length; ``P_l = |W^ W^T - I|``; ``O_l^f = sum(P_l[f]) / J_l``. A large ``O`` means a filter
  overlaps the others, so importance = ``-O``.
- ``weight``: L2 norm of the filter [HMD16].
- ``random``: uniform random scores (the paper's "Random" row).
- ``activation``: mean ReLU activation of the feature map over the data.
- ``apoz``: average percentage of zeros after ReLU [Hu+16]; importance = ``-APoZ``.
- ``taylor``: first-order Taylor criterion [Mol+17]: ``|mean_{n,x,y}(a * dL/da)|``, averaged over batches.
- ``oracle``: greedy oracle (sec 5.3): loss increase on held-out data when the filter alone is zeroed.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

METRICS = ("ortho", "weight", "random", "activation", "apoz", "taylor", "oracle")
DATA_METRICS = ("activation", "apoz", "taylor", "oracle")


def filter_matrix(conv: nn.Conv2d) -> torch.Tensor:
    """The layer's filters as rows: ``W_l`` of shape (J_l, k*k*c) (sec 5.5)."""
    return conv.weight.detach().reshape(conv.out_channels, -1)


def ortho_overlap(weight_rows: torch.Tensor) -> torch.Tensor:
    """``O_l^f`` of eq. 5.2 for every row of ``weight_rows`` (J, D): row sums of ``|W^ W^T - I|`` over J.

    A zero row (a dropped filter) has no direction; it gets overlap 0."""
    w = weight_rows.double()
    norms = w.norm(dim=1, keepdim=True)
    w_hat = torch.where(norms > 0, w / norms.clamp_min(1e-300), torch.zeros_like(w))
    p = (w_hat @ w_hat.T - torch.eye(w.shape[0], dtype=w.dtype, device=w.device)).abs()  # eq. 5.1
    p.fill_diagonal_(0.0)  # |1 - 1| = 0 for real filters; also 0 (not 1) for zero rows
    return (p.sum(dim=1) / w.shape[0]).to(weight_rows.dtype)  # eq. 5.2


def _batches_on(data: Iterable, device: torch.device, max_batches: int | None):
    """The batches of ``data`` on ``device`` (at most ``max_batches``); ValueError when there is none: scores
    of no data are all zero, and ranking by them would drop arbitrary filters."""
    seen = 0
    for i, (x, y) in enumerate(data):
        if max_batches is not None and i >= max_batches:
            break
        seen += 1
        yield x.to(device), y.to(device)
    if not seen:
        raise ValueError("the ranking data yielded no batches (empty, an iterator already used up, or "
                         "max_batches < 1): a data-driven metric needs at least one (inputs, targets) batch")


def _require_data(metric: str, data, loss_fn):
    if data is None:
        raise ValueError(f"ranking metric {metric!r} needs data batches (metric_data=...)")
    if metric in ("taylor", "oracle") and loss_fn is None:
        raise ValueError(f"ranking metric {metric!r} needs a loss function (loss_fn=...)")


def _activation_stats(model: nn.Module, convs: Sequence[nn.Conv2d], data, device, max_batches, kind: str):
    sums = [torch.zeros(c.out_channels, dtype=torch.float64, device=device) for c in convs]
    counts = [0] * len(convs)

    def make_hook(i):
        def hook(_module, _inp, out):
            out = out.detach()
            if kind == "activation":
                per_channel = torch.relu(out).double().sum(dim=(0, 2, 3))
            else:  # apoz
                per_channel = (out <= 0).double().sum(dim=(0, 2, 3))
            sums[i] += per_channel
            counts[i] += out.shape[0] * out.shape[2] * out.shape[3]
        return hook

    handles = [c.register_forward_hook(make_hook(i)) for i, c in enumerate(convs)]
    try:
        with torch.no_grad():
            for x, _ in _batches_on(data, device, max_batches):
                model(x)
    finally:
        for h in handles:
            h.remove()
    means = [s / max(n, 1) for s, n in zip(sums, counts)]
    return [m if kind == "activation" else -m for m in means]


def _taylor(model, convs, data, loss_fn, device, max_batches):
    scores = [torch.zeros(c.out_channels, dtype=torch.float64, device=device) for c in convs]
    outputs: list[torch.Tensor | None] = [None] * len(convs)

    def make_hook(i):
        def hook(_module, _inp, out):
            out.retain_grad()
            outputs[i] = out
        return hook

    handles = [c.register_forward_hook(make_hook(i)) for i, c in enumerate(convs)]
    n_batches = 0
    try:
        for x, y in _batches_on(data, device, max_batches):
            loss = loss_fn(model(x), y)
            grads = torch.autograd.grad(loss, [o for o in outputs])
            for i, (a, g) in enumerate(zip(outputs, grads)):
                scores[i] += (a.detach() * g).double().mean(dim=(0, 2, 3)).abs()
            n_batches += 1
    finally:
        for h in handles:
            h.remove()
    return [s / max(n_batches, 1) for s in scores]


@torch.no_grad()
def _mean_loss(model, batches, loss_fn) -> float:
    total, n = 0.0, 0
    for x, y in batches:
        total += float(loss_fn(model(x), y)) * x.shape[0]
        n += x.shape[0]
    return total / max(n, 1)


def _oracle(model, convs, data, loss_fn, device, max_batches):
    batches = list(_batches_on(data, device, max_batches))
    base = _mean_loss(model, batches, loss_fn)
    scores = []
    for conv in convs:
        layer_scores = torch.zeros(conv.out_channels, dtype=torch.float64, device=device)
        for f in range(conv.out_channels):
            channel = torch.zeros(conv.out_channels, 1, 1, device=device)
            channel[f] = 1.0
            handle = conv.register_forward_hook(lambda _m, _i, out, c=channel: out * (1 - c))
            try:
                layer_scores[f] = _mean_loss(model, batches, loss_fn) - base
            finally:
                handle.remove()
        scores.append(layer_scores)
    return scores


def rank_filters(model: nn.Module, convs: Sequence[nn.Conv2d], metric: str = "ortho", *,
                 data: Iterable | None = None, loss_fn: Callable | None = None,
                 max_batches: int | None = None, generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Per-filter importance (higher = keep) of each conv in ``convs`` under ``metric`` (one of ``METRICS``).

    ``data`` yields ``(inputs, targets)`` batches (needed by the data-driven metrics), ``loss_fn(outputs,
    targets)`` a scalar loss (taylor, oracle). The model's train/eval mode is left as it was but the ranking
    itself runs in eval mode."""
    if metric not in METRICS:
        raise ValueError(f"unknown ranking metric {metric!r}; choose one of {METRICS}")
    if metric in DATA_METRICS:
        _require_data(metric, data, loss_fn)
    device = convs[0].weight.device
    if metric == "ortho":
        return [-ortho_overlap(filter_matrix(c)).double() for c in convs]
    if metric == "weight":
        return [filter_matrix(c).double().norm(dim=1) for c in convs]
    if metric == "random":
        return [torch.rand(c.out_channels, generator=generator, dtype=torch.float64).to(device) for c in convs]
    was_training = model.training
    model.eval()
    try:
        if metric in ("activation", "apoz"):
            return _activation_stats(model, convs, data, device, max_batches, metric)
        if metric == "taylor":
            return _taylor(model, convs, data, loss_fn, device, max_batches)
        return _oracle(model, convs, data, loss_fn, device, max_batches)
    finally:
        model.train(was_training)
