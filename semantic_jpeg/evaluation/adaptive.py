"""Adaptive attack that knows the defense (Athalye, Carlini & Wagner, ICML 2018): untargeted PGD
L-inf with BPDA (the purifier's backward pass is the identity) and EOT (the loss gradient averaged over
``eot`` random draws of the purifier at every step)."""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .defenses import DefenseSpec


def bpda_eot_pgd(model: torch.nn.Module, spec: DefenseSpec, x: np.ndarray, labels: np.ndarray, *,
                 eps: float = 4 / 255, steps: int = 50, step_size: float | None = None, eot: int = 10,
                 seed: int = 0, desc: str = "adaptive") -> np.ndarray:
    """PGD on float32 NCHW [0,1] ``x`` against ``model(purify(x))``: random start in the eps-ball, ``steps``
    signed-gradient steps of ``step_size`` (default 2.5 eps / steps, Madry et al.), projection onto the ball
    and [0,1]. Each step purifies ``eot`` copies of every image through
    :class:`semantic_jpeg.defense_filters.adapters.torch_module.PurifyModule` (straight-through backward),
    sums the cross-entropy over copies and follows its sign. R-CAM-guided purifiers get the map of the
    current adversarial image, as the defense would compute it."""
    from semantic_jpeg.defense_filters.adapters.torch_module import PurifyModule

    from .model import to_nhwc
    from .scoring import rcam_maps

    if eps <= 0 or steps < 1 or eot < 1:
        raise ValueError(f"need eps > 0, steps >= 1, eot >= 1; got eps={eps}, steps={steps}, eot={eot}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    apply = spec.make()

    current = {}  # the R-CAM maps of the current iterate, for R-CAM-guided purifiers

    def purifier(images, rng=None, color_order="RGB"):
        return apply(images, rng, **current)

    purify = PurifyModule(purifier, color_order="RGB", rng=rng)
    x0 = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(device)
    y = torch.from_numpy(np.repeat(np.asarray(labels, np.int64), eot)).to(device)
    delta = torch.from_numpy(rng.uniform(-eps, eps, size=x.shape).astype(np.float32)).to(device)
    x_adv = (x0 + delta).clamp(0, 1)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    for _ in tqdm(range(steps), desc=desc, unit="step", leave=False):
        x_adv.requires_grad_(True)
        copies = x_adv.repeat_interleave(eot, dim=0)
        if spec.rcam:
            current["saliency"] = np.repeat(rcam_maps(to_nhwc(x_adv.detach().cpu().numpy())), eot, axis=0)
        loss = loss_fn(model(purify(copies)), y)
        grad, = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = x_adv + step_size * grad.sign()
            x_adv = torch.min(torch.max(x_adv, x0 - eps), x0 + eps).clamp(0, 1)
    return x_adv.detach().cpu().numpy()
