"""Accuracy of band-limited training vs compression rate, and robustness to Gaussian input noise
(Dziedzic et al., ICML 2019; dissertation Table 2.1 and Figure 2.5), scaled down to a 2-core CPU.

Data: the 10,000 CIFAR-10 test images of ../shared/data/cifar10/cifar10_test_jpeg_decoded.npz, split with a
fixed seed into --train (8000) training and the rest (2000) test images. Model: a small
ResNet (ResNet-8: 3x3 stem, one BasicBlock per stage of --widths channels, default 8/16/32, 1x1 projection shortcuts,
global average pool, linear), every Conv2d swapped for BandLimitedConv2d with the same compress_rate in all
layers (the paper's fixed scheme), trained and evaluated at that rate. The 0% model is the full-spectrum FFT
model. Same initial weights and batch order for every rate. Augmentation: random crop (pad 4) + flip.
Optimiser: SGD momentum 0.9, nesterov, weight decay 5e-4, one-cycle learning rate (max 0.1), batch 128.

Noise: Gaussian noise of standard deviation sigma added to the normalised test images (per-channel
standardised, as the network sees them), one fixed noise draw per sigma shared by all models.

    python benchmarks/bench_band_limited_accuracy.py
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from semantic_jpeg.training.band_limited import swap_conv2d

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/cifar10/cifar10_test_jpeg_decoded.npz"
RESULTS = Path(__file__).resolve().parent / "results"
DOC_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet8(nn.Module):
    """CIFAR ResNet with one BasicBlock per stage (widths 16, 32, 64)."""

    def __init__(self, num_classes=10, widths=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]),
                                  nn.ReLU())
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(BasicBlock(cin, w, 1 if i == 0 else 2))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


def load_split(path: Path, n_train: int, seed: int):
    data = np.load(path)
    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float() / 255.0
    labels = torch.from_numpy(data["labels"]).long()
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(labels)))
    train, test = perm[:n_train], perm[n_train:]
    mean = images[train].mean(dim=(0, 2, 3), keepdim=True)
    std = images[train].std(dim=(0, 2, 3), keepdim=True)
    images = (images - mean) / std
    return images[train], labels[train], images[test], labels[test]


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    padded = F.pad(x, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2,), generator=gen).tolist()  # one crop offset per batch (cheap on CPU)
    out = padded[..., dy : dy + 32, dx : dx + 32]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def train(model, x, y, epochs, batch, seed, desc):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = epochs * ((len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    model.train()
    bar = tqdm(total=steps, desc=desc, mininterval=5)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()


@torch.no_grad()
def accuracy(model, x, y, batch=500) -> float:
    model.eval()
    correct = sum((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item() for i in range(0, len(y), batch))
    return 100.0 * correct / len(y)


def plot(result, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_noise) = plt.subplots(1, 2, figsize=(10, 4))
    rates = [r["compress_rate"] for r in result["models"]]
    ax_rate.plot([100 * r for r in rates], [r["test_accuracy"] for r in result["models"]], "o-")
    ax_rate.set(xlabel="compression rate (%)", ylabel="test accuracy (%)",
                title=f"ResNet-8, CIFAR-10 {result['n_train']}/{result['n_test']} split, {result['epochs']} epochs")
    ax_rate.grid(alpha=0.3)
    for r in result["models"]:
        ax_noise.plot(result["sigmas"], r["noise_accuracy"], "o-", label=f"{100 * r['compress_rate']:.0f}% compression")
    ax_noise.set(xlabel="Gaussian noise sigma (normalised input)", ylabel="test accuracy (%)",
                 title="Robustness to input noise (cf. paper Fig. 2.5)")
    ax_noise.grid(alpha=0.3)
    ax_noise.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 0.25, 0.5])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--widths", type=int, nargs=3, default=[8, 16, 32])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the CPU here is shared)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0])
    parser.add_argument("--out", type=Path, default=RESULTS / "band_limited_accuracy.json")
    parser.add_argument("--plot", type=Path, default=DOC_IMG / "band_limited_accuracy_noise.png")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"data not found: {args.data} (pass --data)", file=sys.stderr)
        return 2

    torch.set_num_threads(args.threads)
    x_train, y_train, x_test, y_test = load_split(args.data, args.train, args.seed)
    noise_gen = torch.Generator().manual_seed(args.seed + 1)
    noise = torch.randn(x_test.shape, generator=noise_gen)
    models = []
    for rate in args.rates:
        torch.manual_seed(args.seed)
        model = ResNet8(widths=tuple(args.widths))
        swap_conv2d(model, compress_rate=rate, backend=args.backend)
        t0 = time.perf_counter()
        train(model, x_train, y_train, args.epochs, args.batch, args.seed, desc=f"rate {rate:.2f}")
        train_s = time.perf_counter() - t0
        acc = accuracy(model, x_test, y_test)
        noisy = [accuracy(model, x_test + s * noise, y_test) for s in args.sigmas]
        models.append(dict(compress_rate=rate, test_accuracy=acc, noise_accuracy=noisy, train_seconds=train_s))
        print(f"rate {rate:.2f}: test accuracy {acc:.2f}%  train {train_s:.0f}s  noise "
              + " ".join(f"{s}:{a:.1f}" for s, a in zip(args.sigmas, noisy)), flush=True)

    result = dict(command="python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]), data=str(args.data),
                  n_train=len(y_train), n_test=len(y_test), epochs=args.epochs, batch=args.batch, seed=args.seed,
                  backend=args.backend, model=f"ResNet8 (widths {args.widths}, all Conv2d band-limited)",
                  sigmas=args.sigmas,
                  threads=torch.get_num_threads(), models=models)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.plot)
    print(f"saved {args.out} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
