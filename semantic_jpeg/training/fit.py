"""A small training loop: progress bars, per-epoch metrics log (JSON lines), checkpoints and exact resume,
and an optional RePr callback (Algorithm 3, one schedule unit = one epoch)."""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._cliutil import write_file
from .repr import RePr


def vanilla_convnet(n_layers: int = 3, width: int = 32, num_classes: int = 10, image_size: int = 32,
                    in_channels: int = 3) -> nn.Sequential:
    """C^n(X) of sec 5.4: Img -> [CONV(X) 3x3 -> RELU]^n -> FC (softmax in the loss)."""
    sizes = {"n_layers": n_layers, "width": width, "num_classes": num_classes, "image_size": image_size,
             "in_channels": in_channels}
    bad = {k: v for k, v in sizes.items() if isinstance(v, bool) or not isinstance(v, int) or v <= 0}
    if bad:
        raise ValueError(f"{', '.join(bad)} must be positive integers, got {bad}")
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(n_layers):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        channels = width
    layers += [nn.Flatten(), nn.Linear(width * image_size * image_size, num_classes)]
    return nn.Sequential(*layers)


def check_device(device) -> torch.device:
    """``device`` as a torch.device; ValueError for one that torch cannot use here (a CUDA device without a usable
    CUDA build or GPU), before any work or checkpoint is touched."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device {device!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but torch sees no usable CUDA GPU (torch "
                         f"{torch.__version__})")
    return device


def correct_count(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Top-1 hits for class-index targets; for multi-hot float targets, correct label decisions
    (sigmoid > 0.5) divided by the number of classes, so either counts per example."""
    if targets.dtype.is_floating_point:
        return float(((outputs > 0) == (targets > 0.5)).float().mean(dim=1).sum())
    return float((outputs.argmax(dim=1) == targets).sum())


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable = F.cross_entropy,
             device: torch.device | str = "cpu") -> dict:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode."""
    was_training = model.training
    model.eval()
    total_loss = correct = n = 0.0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        total_loss += float(loss_fn(out, y)) * len(x)
        correct += correct_count(out, y)
        n += len(x)
    model.train(was_training)
    return {"loss": total_loss / max(n, 1), "accuracy": correct / max(n, 1)}


def save_atomic(state: dict, path: Path) -> None:
    """torch.save through :func:`semantic_jpeg._cliutil.write_file`, so a crash mid-write never leaves a
    truncated checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_file(path, buffer.getvalue(), overwrite=True)


def load_checkpoint(checkpoint: Path, restore: Callable[[dict], Any], map_location=None):
    """``restore(state)`` of the checkpoint file ``checkpoint``, or a ValueError naming the file when it cannot be
    read or restored (truncated, foreign, another network's): one message, not torch's traceback."""
    try:
        return restore(torch.load(checkpoint, map_location=map_location, weights_only=False))
    except Exception as exc:  # noqa: BLE001 -- any of those: the same message
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"cannot resume from {checkpoint}: it is not a readable checkpoint of this run "
                         f"({type(exc).__name__}: {first}); delete it, or start a new run") from None


def fit(model: nn.Module, train_loader: Iterable, optimizer: torch.optim.Optimizer, epochs: int, *,
        loss_fn: Callable = F.cross_entropy, repr_: RePr | None = None, eval_loader: Iterable | None = None,
        checkpoint: str | Path | None = None, resume: bool = False, log_path: str | Path | None = None,
        device: torch.device | str = "cpu", progress: bool = True, desc: str = "train",
        callbacks: Iterable[Callable[[dict], None]] = ()) -> list[dict]:
    """Trains ``epochs`` epochs and returns one record per epoch (train/test loss and accuracy, RePr phase).

    ``train_loader.set_epoch(epoch)`` is called when it exists, so shuffling/augmentation are a function of
    the epoch; with ``checkpoint`` the model, optimizer, RePr state, RNG state and history are saved after
    every epoch, and ``resume=True`` continues from that file to the same result as an uninterrupted run.
    ``log_path`` receives one JSON line per epoch; each of ``callbacks`` is called with the epoch's record
    after the checkpoint is written."""
    if epochs <= 0:
        raise ValueError(f"epochs must be positive, got {epochs}")
    if repr_ is not None and repr_.n_rounds * (repr_.s1 + repr_.s2) > epochs:
        raise ValueError(f"RePr schedule N*(S1+S2) = {repr_.n_rounds * (repr_.s1 + repr_.s2)} epochs exceeds "
                         f"the training budget of {epochs} epochs")
    check_device(device)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    history: list[dict] = []
    start = 0
    if resume:
        if checkpoint is None or not checkpoint.is_file():
            raise FileNotFoundError(f"cannot resume: checkpoint {checkpoint} not found")

        def restore(state):
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if repr_ is not None:
                repr_.load_state_dict(state["repr"])
            torch.set_rng_state(state["torch_rng"])
            return list(state["history"]), int(state["epoch"])

        history, start = load_checkpoint(checkpoint, restore, map_location=device)
        if start > epochs:
            raise ValueError(f"cannot resume {checkpoint} at epoch {start} with --epochs {epochs}: it has trained "
                             "more epochs already")
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:  # rewritten from the (possibly resumed) history
            for record in history:
                log.write(json.dumps(record) + "\n")
    model.to(device)
    bar = tqdm(range(start, epochs), desc=desc, disable=not progress, initial=start, total=epochs)
    for epoch in bar:
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)
        model.train()
        phase = "pruned" if repr_ is not None and repr_.pruning else "full"
        total_loss = correct = n = 0.0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(x)
            correct += correct_count(out.detach(), y)
            n += len(x)
        if not n:
            raise ValueError("train_loader yielded no batches")
        record = {"epoch": epoch + 1, "phase": phase, "train_loss": total_loss / n, "train_accuracy": correct / n}
        if eval_loader is not None:
            test = evaluate(model, eval_loader, loss_fn, device)
            record.update(test_loss=test["loss"], test_accuracy=test["accuracy"])
        if repr_ is not None:
            action = repr_.step()
            if action:
                record["repr"] = action
        history.append(record)
        bar.set_postfix({k: round(v, 4) for k, v in record.items() if isinstance(v, float)})
        if log_path is not None:
            with open(log_path, "a") as log:
                log.write(json.dumps(record) + "\n")
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            save_atomic({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "repr": repr_.state_dict() if repr_ is not None else None,
                          "torch_rng": torch.get_rng_state(), "history": history}, checkpoint)
        for callback in callbacks:
            callback(record)
    return history
