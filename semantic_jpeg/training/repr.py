"""RePr training scheme (Prakash et al., CVPR 2019) as a callback for any conv net and any optimizer.

Use it in your own loop::

    repr_ = RePr(model, optimizer, s1=20, s2=10, n_rounds=3, prune_ratio=0.3, total=100)
    for epoch in range(100):
        train_one_epoch(model, optimizer)   # ordinary loop; RePr's hooks act inside optimizer.step()
        repr_.step()                        # one schedule unit done (an epoch here; iterations work too)

or through :func:`semantic_jpeg.training.fit.fit` (``fit(..., repr_=repr_)``).

Algorithm 3: train the full network for S1 units; rank every filter with the metric R (over the whole
network by default, per layer on request); drop the bottom p% for S2 units; re-initialise the dropped
filters orthogonal to the kept ones; repeat N times; then training goes on with the full network.

A dropped filter is truly removed during S2: its weights, bias and its BatchNorm gamma/beta are zeroed, its
gradients are masked by tensor hooks (so neither momentum nor weight decay can move it) and an optimizer
post-step hook re-zeroes it after every step. Its optimizer state (momentum / Adam moments) is zeroed when
it is dropped and again when it is re-initialised; its BatchNorm gamma, beta and running statistics are
reset at re-initialisation (sec 5.4). With Adam, the per-parameter ``step`` count is shared by the whole
tensor and is kept.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

from .ranking import METRICS, rank_filters

SCOPES = ("global", "layer")


def conv_layers(model: nn.Module) -> list[nn.Conv2d]:
    """All ``nn.Conv2d`` modules of ``model`` in registration order."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def following_batchnorms(model: nn.Module, convs: Sequence[nn.Conv2d]) -> dict[nn.Conv2d, nn.BatchNorm2d]:
    """Pairs each conv with the BatchNorm2d that follows it in registration order (before the next conv)
    when its ``num_features`` equals the conv's ``out_channels`` (the conv -> BN -> ReLU pattern)."""
    wanted = set(convs)
    pairs: dict[nn.Conv2d, nn.BatchNorm2d] = {}
    last_conv = None
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            last_conv = module if module in wanted else None
        elif isinstance(module, nn.BatchNorm2d) and last_conv is not None:
            if module.num_features == last_conv.out_channels:
                pairs[last_conv] = module
            last_conv = None
    return pairs


def orthogonal_filters(kept: torch.Tensor, n_new: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n_new`` unit-length rows orthogonal to the span of ``kept`` (k, D) and to each other (line 10 of
    Algorithm 3). When ``k + n_new > D`` full orthogonality is impossible; the new rows then avoid the
    ``D - n_new`` strongest directions of the kept filters (their top right-singular vectors)."""
    dim = kept.shape[1]
    kept64 = kept.detach().double().cpu()
    if kept64.shape[0] > 0 and kept64.abs().sum() > 0:
        _, singular, vh = torch.linalg.svd(kept64, full_matrices=True)
        rank = int((singular > singular.max() * dim * torch.finfo(torch.float64).eps).sum())
        avoid = min(rank, max(dim - n_new, 0))
        complement = vh[avoid:]  # orthonormal rows spanning what the new filters may use
    else:
        complement = torch.eye(dim, dtype=torch.float64)
    gauss = torch.randn(n_new, complement.shape[0], generator=generator, dtype=torch.float64)
    if n_new <= complement.shape[0]:
        q, r = torch.linalg.qr(gauss.T)  # (free, n_new), orthonormal columns
        coords = (q * torch.sign(torch.diagonal(r))).T
    else:  # more new filters than free directions: orthogonal to the kept ones, not to each other
        coords = gauss / gauss.norm(dim=1, keepdim=True)
    return (coords @ complement).to(kept.dtype)


class RePr:
    """Algorithm 3 as a callback: call :meth:`step` once per schedule unit (epoch or iteration).

    Parameters: ``s1`` / ``s2`` units of full / sub-network training per round, ``n_rounds`` (N),
    ``prune_ratio`` (p, in (0, 1)), ``total`` the planned training length in units (checked against
    N*(S1+S2)), ``metric`` one of ``ranking.METRICS``, ``scope`` "global" (paper) or "layer",
    ``convs`` the layers to act on (default: every Conv2d), ``metric_data`` / ``loss_fn`` / ``metric_batches``
    for the data-driven metrics, ``seed`` for the random metric and the re-initialisation."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, s1: int, s2: int,
                 n_rounds: int = 3, prune_ratio: float = 0.3, total: int | None = None, metric: str = "ortho",
                 scope: str = "global", convs: Sequence[nn.Conv2d] | None = None,
                 metric_data: Iterable | None = None, loss_fn: Callable | None = None,
                 metric_batches: int | None = None, seed: int = 0):
        for name, value in (("s1", s1), ("s2", s2), ("n_rounds", n_rounds)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < float(prune_ratio) < 1.0:
            raise ValueError(f"prune_ratio (p) must lie in (0, 1), got {prune_ratio!r}")
        if total is not None and n_rounds * (s1 + s2) > total:
            raise ValueError(f"N*(S1+S2) = {n_rounds}*({s1}+{s2}) = {n_rounds * (s1 + s2)} exceeds the "
                             f"training budget of {total} units")
        if metric not in METRICS:
            raise ValueError(f"unknown ranking metric {metric!r}; choose one of {METRICS}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.convs = list(convs) if convs is not None else conv_layers(model)
        if not self.convs:
            raise ValueError("RePr needs a model with at least one nn.Conv2d layer; none found")
        frozen = [i for i, conv in enumerate(self.convs) if not conv.weight.requires_grad]
        if frozen:  # its gradient mask cannot be installed: refused now, not halfway through the first drop
            raise ValueError(f"convolutions {frozen} (of the {len(self.convs)} RePr acts on) are frozen "
                             "(requires_grad=False); pass the trainable ones as convs=")
        if metric_data is not None and iter(metric_data) is metric_data:
            raise TypeError("metric_data must be re-iterable (a list or a DataLoader): a one-shot iterator or "
                            "generator would be used up by the first ranking")
        self.model, self.optimizer = model, optimizer
        self.s1, self.s2, self.n_rounds, self.prune_ratio = s1, s2, n_rounds, float(prune_ratio)
        self.metric, self.scope = metric, scope
        self.metric_data, self.loss_fn, self.metric_batches = metric_data, loss_fn, metric_batches
        self.batchnorms = following_batchnorms(model, self.convs)
        self.generator = torch.Generator().manual_seed(seed)
        self.position = 0
        self.dropped: list[torch.Tensor] | None = None  # per conv, bool mask of dropped filters during S2
        self.events: list[dict] = []
        self._grad_hooks: list = []
        self._step_hook = optimizer.register_step_post_hook(lambda *_: self._rezero_dropped())

    # ----- schedule
    @staticmethod
    def schedule(s1: int, s2: int, n_rounds: int) -> list[tuple[int, int]]:
        """(start, end) units of every S2 phase: the sub-network trains from unit ``start`` to ``end``."""
        return [(r * (s1 + s2) + s1, (r + 1) * (s1 + s2)) for r in range(n_rounds)]

    @property
    def drop_intervals(self) -> list[tuple[int, int]]:
        """(start, end) units of every S2 phase, for plots (the shaded regions of Figure 5.1)."""
        return self.schedule(self.s1, self.s2, self.n_rounds)

    @property
    def pruning(self) -> bool:
        """True while a sub-network is being trained (inside an S2 phase)."""
        return self.dropped is not None

    def step(self) -> str | None:
        """Marks one unit done; drops or re-initialises filters when the schedule says so. Returns
        "drop", "reinit" or None."""
        self.position += 1
        for start, end in self.drop_intervals:
            if self.position == start:
                self.drop()
                return "drop"
            if self.position == end:
                self.reinit()
                return "reinit"
        return None

    # ----- the two actions of Algorithm 3
    def select(self) -> list[torch.Tensor]:
        """Bool masks (per conv) of the bottom p% filters under the metric (lines 5-6 of Algorithm 3)."""
        scores = rank_filters(self.model, self.convs, self.metric, data=self.metric_data, loss_fn=self.loss_fn,
                              max_batches=self.metric_batches, generator=self.generator)
        masks = [torch.zeros(c.out_channels, dtype=torch.bool) for c in self.convs]
        if self.scope == "layer":
            for mask, s in zip(masks, scores):
                n_drop = min(int(round(self.prune_ratio * s.numel())), s.numel() - 1)
                mask[torch.argsort(s.cpu(), stable=True)[:n_drop]] = True
            return masks
        flat = torch.cat([s.cpu() for s in scores])
        owner = torch.cat([torch.full((s.numel(),), i) for i, s in enumerate(scores)])
        index = torch.cat([torch.arange(s.numel()) for s in scores])
        n_drop = int(round(self.prune_ratio * flat.numel()))
        left = [c.out_channels for c in self.convs]
        taken = 0
        for j in torch.argsort(flat, stable=True).tolist():
            if taken == n_drop:
                break
            layer = int(owner[j])
            if left[layer] > 1:  # never remove a whole layer
                masks[layer][index[j]] = True
                left[layer] -= 1
                taken += 1
        return masks

    def drop(self, masks: list[torch.Tensor] | None = None) -> None:
        """Starts an S2 phase: removes the selected filters (``masks`` or :meth:`select`)."""
        if self.pruning:
            raise RuntimeError("filters are already dropped; call reinit() first")
        if masks is not None:
            shapes = [(c.out_channels,) for c in self.convs]
            if len(masks) != len(self.convs) or [tuple(m.shape) for m in masks] != shapes:
                raise ValueError(f"masks must be one 1-D mask per convolution, of shapes {shapes}, got "
                                 f"{[tuple(m.shape) for m in masks]}")
            if any(bool(torch.as_tensor(m).to(torch.bool).all()) for m in masks):
                raise ValueError("a mask drops every filter of its layer; keep at least one (its kept filters "
                                 "are the basis of the re-initialisation)")
        self.dropped = [m.to(torch.bool).cpu() for m in (masks if masks is not None else self.select())]
        self._zero_dropped()
        self._reset_optimizer_state()
        self._install_grad_masks()
        self.events.append({"position": self.position, "action": "drop",
                            "dropped_per_layer": [int(m.sum()) for m in self.dropped]})

    def reinit(self) -> None:
        """Ends an S2 phase: re-initialises the dropped filters orthogonal to the kept ones (line 10),
        resets their BatchNorm parameters and statistics and their optimizer state."""
        if not self.pruning:
            raise RuntimeError("no filters are dropped")
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks = []
        with torch.no_grad():
            for conv, dropped in zip(self.convs, self.dropped):
                if not dropped.any():
                    continue
                weight = conv.weight
                idx = dropped.to(weight.device)
                kept = weight[~idx].reshape(int((~dropped).sum()), -1)
                scale = kept.norm(dim=1).mean() if kept.shape[0] else torch.tensor(1.0)
                new = orthogonal_filters(kept, int(dropped.sum()), self.generator).to(weight.device)
                weight[idx] = (new * scale.to(new.dtype)).reshape((-1,) + tuple(weight.shape[1:]))
                if conv.bias is not None:
                    conv.bias[idx] = 0.0
                bn = self.batchnorms.get(conv)
                if bn is not None:
                    if bn.affine:
                        bn.weight[idx] = 1.0
                        bn.bias[idx] = 0.0
                    if bn.track_running_stats:
                        bn.running_mean[idx] = 0.0
                        bn.running_var[idx] = 1.0
        self._reset_optimizer_state()
        self.events.append({"position": self.position, "action": "reinit",
                            "reinitialised_per_layer": [int(m.sum()) for m in self.dropped]})
        self.dropped = None

    # ----- freezing machinery
    def _params_of(self, conv: nn.Conv2d) -> list[torch.Tensor]:
        params = [conv.weight] + ([conv.bias] if conv.bias is not None else [])
        bn = self.batchnorms.get(conv)
        if bn is not None and bn.affine:
            params += [bn.weight, bn.bias]
        return params

    def _rows(self, param: torch.Tensor, dropped: torch.Tensor) -> tuple:
        return (dropped.to(param.device),) + (slice(None),) * (param.dim() - 1)

    def _zero_dropped(self) -> None:
        with torch.no_grad():
            for conv, dropped in zip(self.convs, self.dropped):
                if dropped.any():
                    for p in self._params_of(conv):
                        p[self._rows(p, dropped)] = 0.0

    def _rezero_dropped(self) -> None:
        if self.pruning:
            self._zero_dropped()

    def _install_grad_masks(self) -> None:
        for conv, dropped in zip(self.convs, self.dropped):
            if not dropped.any():
                continue
            for p in self._params_of(conv):
                keep = (~dropped).to(device=p.device, dtype=p.dtype).reshape((-1,) + (1,) * (p.dim() - 1))
                self._grad_hooks.append(p.register_hook(lambda g, k=keep: g * k))

    def _reset_optimizer_state(self) -> None:
        with torch.no_grad():
            for conv, dropped in zip(self.convs, self.dropped):
                if not dropped.any():
                    continue
                for p in self._params_of(conv):
                    for value in self.optimizer.state.get(p, {}).values():
                        if torch.is_tensor(value) and value.shape == p.shape:
                            value[self._rows(value, dropped)] = 0.0

    # ----- checkpointing
    def state_dict(self) -> dict:
        return {"position": self.position, "generator": self.generator.get_state(), "events": list(self.events),
                "dropped": None if self.dropped is None else [m.clone() for m in self.dropped]}

    def load_state_dict(self, state: dict) -> None:
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks = []
        self.position = int(state["position"])
        self.generator.set_state(state["generator"])
        self.events = list(state["events"])
        self.dropped = None if state["dropped"] is None else [m.clone() for m in state["dropped"]]
        if self.dropped is not None:
            self._install_grad_masks()

    def close(self) -> None:
        """Removes every hook this object installed on the model and the optimizer."""
        for handle in self._grad_hooks:
            handle.remove()
        self._grad_hooks = []
        self._step_hook.remove()
