"""Selective dropout (W. Hinthorn, "Visualization and Selective Dropout for Adversarial Image
Classification", Princeton, sec. 5.3-5.4): hard-negative fine-tuning on adversarial examples in which only
the most volatile units of one chosen layer are updated.

Volatility of a unit (Hinthorn, sec. 5.2-5.3): the absolute difference between the Frobenius norm of its
activity on the adversarial image and on the original image (a conv unit = an output channel, its activity
the H x W map; a linear unit = one output). At every step the fraction ``keep`` (the paper's p) of the layer's
units with the largest volatility on the current batch is selected; only their incoming weights and bias
change. Steps alternate between the adversarial batch and its original counterpart, both with the true labels
(sec 5.4), so the network learns the adversarial space without forgetting the clean one. ``keep=1`` is the
paper's control (the whole layer is trained).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from tqdm.auto import tqdm


def _check_layer(model: nn.Module, layer: nn.Module) -> None:
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"layer must be an nn.Conv2d or nn.Linear, got {type(layer).__name__}")
    if not any(m is layer for m in model.modules()):
        raise ValueError("layer is not a module of model")


@torch.no_grad()
def unit_activity_norms(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(N, units) Frobenius norm of each unit's output of ``layer`` for inputs ``x``."""
    captured = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    try:
        model(x)
    finally:
        handle.remove()
    out = captured[0]
    return out.flatten(2).norm(dim=2) if out.dim() > 2 else out.abs()


def volatility(model: nn.Module, layer: nn.Module, clean: torch.Tensor, adversarial: torch.Tensor) -> torch.Tensor:
    """Per-unit volatility ``mean_n | ||a_adv|| - ||a_clean|| |`` over the batch (Hinthorn, sec. 5.2)."""
    if clean.shape != adversarial.shape:
        raise ValueError(f"clean {tuple(clean.shape)} and adversarial {tuple(adversarial.shape)} differ in shape")
    return (unit_activity_norms(model, layer, adversarial) - unit_activity_norms(model, layer, clean)).abs().mean(0)


def select_volatile(scores: torch.Tensor, keep: float) -> torch.Tensor:
    """Bool mask of the ``ceil(keep * units)`` most volatile units."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask[torch.argsort(scores, descending=True, stable=True)[:math.ceil(keep * scores.numel())]] = True
    return mask


def selective_dropout_finetune(model: nn.Module, layer: nn.Module, clean: torch.Tensor, adversarial: torch.Tensor,
                               labels: torch.Tensor, *, keep: float = 0.2, lr: float = 1e-3, epochs: int = 1,
                               batch_size: int = 32, seed: int = 0, progress: bool = False) -> list[dict]:
    """Fine-tunes ``layer`` of ``model`` (in eval mode: BatchNorm statistics and dropout fixed) on
    (clean, adversarial, labels) pairs with plain SGD; returns one record per epoch with the mean adversarial
    and clean losses and how often each unit was selected (the paper's "instability", Figure 13)."""
    _check_layer(model, layer)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep (the fraction of units trained) must lie in (0, 1], got {keep!r}")
    if len(clean) == 0 or not (len(clean) == len(adversarial) == len(labels)):
        raise ValueError(f"need equally many (>0) clean images, adversarial images and labels, got "
                         f"{len(clean)}, {len(adversarial)}, {len(labels)}")
    if any(isinstance(v, bool) for v in (keep, epochs, batch_size)) or epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch_size must be positive integers (keep a fraction), got {epochs!r}, "
                         f"{batch_size!r}, {keep!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    for name, t in (("clean", clean), ("adversarial", adversarial)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} images contain NaN or infinity")
    params = [p for p in (layer.weight, layer.bias) if p is not None]
    optimizer = torch.optim.SGD(params, lr=lr)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    history = []
    try:
        for epoch in tqdm(range(epochs), desc="selective dropout", disable=not progress):
            order = torch.randperm(len(clean), generator=generator)
            losses = {"adversarial": 0.0, "clean": 0.0}
            selected = torch.zeros(layer.weight.shape[0])
            steps = 0
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                mask = select_volatile(volatility(model, layer, clean[idx], adversarial[idx]), keep)
                selected += mask.float().cpu()
                steps += 1
                for kind, x in (("adversarial", adversarial[idx]), ("clean", clean[idx])):
                    loss = nn.functional.cross_entropy(model(x), labels[idx])
                    grads = torch.autograd.grad(loss, params)
                    optimizer.zero_grad(set_to_none=True)
                    for p, g in zip(params, grads):
                        p.grad = g * mask.to(g).reshape((-1,) + (1,) * (g.dim() - 1))
                    optimizer.step()
                    losses[kind] += float(loss.detach()) * len(idx)
            history.append({"epoch": epoch + 1, "adversarial_loss": losses["adversarial"] / len(clean),
                            "clean_loss": losses["clean"] / len(clean),
                            "selection_rate": (selected / steps).tolist()})
    finally:
        model.train(was_training)
    return history
