"""The evaluation pipeline: data -> clean filtering -> attacks -> defenses -> budget sweep -> ablations ->
adaptive attacks -> JSON + Markdown + plots."""
from __future__ import annotations

import errno
import io
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from semantic_jpeg._cliutil import write_file
from semantic_jpeg.training.efficientnet import NUM_CLASSES

from . import report
from .adaptive import bpda_eot_pgd
from .attacks import ATTACKS, DEFAULT_ATTACKS, generate_adversarial
from .cache import ArrayCache, digest, key_seed, user_cache_dir
from .data import load_imagenet_samples, read_labels
from .defenses import ABLATIONS, DEFAULT_DEFENSES, DEFENSES, LOSSY_CHANNELS
from .metrics import destruction_rate, linf, rmse, top1_accuracy
from .model import art_classifier, load_classifier, model_id, predict, to_nchw, to_nhwc
from .scoring import run_defense, score

BEST_LOSSY = "best-lossy"  # adaptive target resolved to the lossy channel with the best non-adaptive accuracy
SWEEP_EPS = (0.5 / 255, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)  # plus each swept attack's own budget
SWEEP_RMSE = (0.0025, 0.005, 0.01, 0.02, 0.04)  # |L2| of the swept minimal attacks, plus their own minimal one


@dataclass
class EvalConfig:
    data: str = ""  # an imagenet_samples folder: labels.csv (filename, class_index, ...) and its images (required)
    subset: int | None = 100
    seed: int = 0
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    defenses: tuple[str, ...] = DEFAULT_DEFENSES
    draws: int = 10
    headline: str = "pd+rcam+dwt"
    sweep_images: int = 0
    sweep_attacks: tuple[str, ...] = ("fgsm", "igsm")
    sweep_eps: tuple[float, ...] = SWEEP_EPS
    sweep_rmse: tuple[float, ...] = SWEEP_RMSE
    sweep_defenses: tuple[str, ...] = ("pd+rcam+dwt", "jpeg", "aug-msroi-jpeg", "art-smooth")
    ablation_images: int = 20
    ablations: tuple[str, ...] = tuple(ABLATIONS)
    adaptive_images: int = 10
    adaptive_defenses: tuple[str, ...] = ("pd+rcam+dwt", "aug-msroi-jpeg", BEST_LOSSY)
    adaptive_steps: int = 50
    adaptive_eot: int = 10
    adaptive_eps: float = 4 / 255
    adaptive_batch: int = 2  # images per BPDA+EOT call; its random start and EOT draws are seeded per call
    cache_dir: str | None = field(default_factory=user_cache_dir)  # None: no cache
    device: str = "cpu"
    threads: int | None = None
    command: str = ""

    def check(self) -> None:
        for name in self.attacks:
            if name not in ATTACKS:
                raise ValueError(f"unknown attack {name!r}; choose from {sorted(ATTACKS)}")
        for name in self.defenses:
            if name not in DEFENSES:
                raise ValueError(f"unknown defense {name!r}; choose from {sorted(DEFENSES)}")
        for name in self.sweep_attacks:
            if name not in ATTACKS or ATTACKS[name].targeted or ATTACKS[name].scales is not None:
                raise ValueError(f"cannot sweep the budget of {name!r}; choose from "
                                 f"{sorted(a for a, s in ATTACKS.items() if not s.targeted and s.scales is None)}")
        for name in self.sweep_defenses:
            if name not in DEFENSES:
                raise ValueError(f"unknown sweep defense {name!r}; choose from {sorted(DEFENSES)}")
        if not all(0 < eps <= 1 for eps in self.sweep_eps):
            raise ValueError(f"sweep budgets must be in (0, 1] pixel units, got {list(self.sweep_eps)}")
        if not all(0 < r < 1 for r in self.sweep_rmse):
            raise ValueError(f"sweep |L2| values must be in (0, 1) pixel units, got {list(self.sweep_rmse)}")
        for name in self.adaptive_defenses:
            if name not in DEFENSES and name != BEST_LOSSY:
                raise ValueError(f"unknown adaptive defense {name!r}; choose from {sorted(DEFENSES)} or {BEST_LOSSY}")
        for title in self.ablations:
            if title not in ABLATIONS:
                raise ValueError(f"unknown ablation {title!r}; choose from {list(ABLATIONS)}")
        if self.draws < 1 or self.adaptive_steps < 1 or self.adaptive_eot < 1:
            raise ValueError("draws, adaptive_steps and adaptive_eot must be >= 1")
        if min(self.sweep_images, self.ablation_images, self.adaptive_images) < 0:
            raise ValueError("sweep_images, ablation_images and adaptive_images must be >= 0")
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"bad device {self.device!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {self.device!r} asked for, but torch sees no CUDA GPU")
        read_labels(self.data, self.subset, self.seed, NUM_CLASSES)


def _keys(images: np.ndarray) -> list[str]:
    return [digest("image", im) for im in images]


def evaluate(cfg: EvalConfig) -> dict:
    """Run the whole evaluation and return the JSON-serialisable results."""
    import art

    cfg.check()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    timing, t = {}, time.perf_counter()
    cache = ArrayCache(cfg.cache_dir)
    model = load_classifier(cfg.device)
    mid = model_id()

    ds = load_imagenet_samples(cfg.data, subset=cfg.subset, seed=cfg.seed, num_classes=NUM_CLASSES)
    x_all = to_nchw(ds.images)
    pred_all = predict(model, x_all)
    keep = np.flatnonzero(pred_all == ds.labels)
    if keep.size == 0:
        raise ValueError(f"the clean model classifies none of the {len(ds)} loaded images correctly, so there is "
                         "nothing to attack; check that labels.csv gives each image's ImageNet-1k class index")
    ds, x = ds.take(keep), x_all[keep]
    labels, clean_pred = ds.labels, pred_all[keep]
    clean = to_nhwc(x)
    timing["data"] = time.perf_counter() - t

    # attacks on the undefended model
    t = time.perf_counter()
    estimator = art_classifier(model, x.shape[-1])
    sets = {"clean": clean}
    undefended = {}
    attacks = {}
    for name in cfg.attacks:
        x_adv = generate_adversarial(name, estimator, x, labels, cache, mid, cfg.seed)
        undefended[name] = predict(model, x_adv)
        sets[name] = to_nhwc(x_adv)
        spec = ATTACKS[name]
        attacks[name] = {"label": spec.label, "art_class": spec.art_class, "params": spec.params,
                         "threat": spec.threat, "rmse_mean": float(rmse(x, x_adv).mean()),
                         "linf_mean": float(linf(x, x_adv).mean()),
                         "undefended_acc": top1_accuracy(undefended[name], labels)}
    timing["attacks"] = time.perf_counter() - t

    # defenses on the same images
    t = time.perf_counter()
    keys = {s: _keys(images) for s, images in sets.items()}
    defenses = {}
    for name in cfg.defenses:
        spec = DEFENSES[name]
        results = {}
        for s, images in sets.items():
            run = run_defense(name, spec, model, images, clean, keys[s], cache, cfg.draws, cfg.seed,
                              desc=f"{name} on {s}")
            results[s] = score(run, labels, *((clean_pred, undefended[s]) if s != "clean" else ()))
        defenses[name] = {"label": spec.label, "group": spec.group, "params": spec.params,
                          "stochastic": spec.stochastic, "results": results}
    timing["defenses"] = time.perf_counter() - t

    # budget sweep on the first images
    t = time.perf_counter()
    n_sw = min(cfg.sweep_images, len(labels))
    sweep = _budget_sweep(cfg, model, estimator, cache, x[:n_sw], clean[:n_sw], labels[:n_sw],
                          clean_pred[:n_sw]) if n_sw else {}
    timing["budget_sweep"] = time.perf_counter() - t

    # ablations on the first images
    t = time.perf_counter()
    ablations = {}
    n_ab = min(cfg.ablation_images, len(labels))
    if n_ab:
        for title in cfg.ablations:
            columns = {}
            for column, spec in ABLATIONS[title].items():
                columns[column] = {}
                for s, images in sets.items():
                    run = run_defense(f"ablation:{spec.label}", spec, model, images[:n_ab], clean[:n_ab],
                                      keys[s][:n_ab], cache, 1, cfg.seed, desc=f"{title[:10]} {column} on {s}")
                    columns[column][s] = score(run, labels[:n_ab], *(
                        (clean_pred[:n_ab], undefended[s][:n_ab]) if s != "clean" else ()))
            ablations[title] = {"params": {c: ABLATIONS[title][c].params for c in columns}, "columns": columns}
    timing["ablations"] = time.perf_counter() - t

    # adaptive BPDA + EOT PGD on the first images
    t = time.perf_counter()
    adaptive = {}
    n_ad = min(cfg.adaptive_images, len(labels))
    if n_ad:
        adaptive = _adaptive(cfg, model, cache, x[:n_ad], clean[:n_ad], labels[:n_ad], defenses, sets, keys)
    timing["adaptive"] = time.perf_counter() - t

    return {
        "command": cfg.command, "config": asdict(cfg),
        "versions": {"art": art.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "model": mid},
        "device": cfg.device, "n_loaded": int(len(pred_all)), "n_evaluated": int(len(labels)),
        "clean_top1_loaded": float(len(keep) / len(pred_all)), "images": ds.names,
        "attacks": attacks, "defenses": defenses, "budget_sweep": sweep, "ablation_images": n_ab,
        "ablations": ablations, "adaptive": adaptive, "timing_s": timing,
    }


def _budget_sweep(cfg, model, estimator, cache, x, clean, labels, clean_pred) -> dict:
    """Each swept attack at each L-inf budget (its own included, whose images and scores come from the cache),
    or, for a minimal-perturbation attack (DeepFool, C&W), its minimal images and their perturbations scaled to
    each |L2| of ``cfg.sweep_rmse`` (the attack's ``at_rmse``), scored against the sweep defenses: where the
    destruction rate falls as the budget grows. ``dr_kept_single``
    is the destruction rate among the images the defense also gets right when they are clean (the rate with
    the defended clean prediction in place of the undefended one), which separates what the defense costs on
    clean images from what it undoes of the attack."""
    clean_keys = _keys(clean)
    clean_runs = {d: run_defense(d, DEFENSES[d], model, clean, clean, clean_keys, cache, cfg.draws, cfg.seed,
                                 desc=f"{d} on clean") for d in cfg.sweep_defenses}
    out = {}
    for name in cfg.sweep_attacks:
        base = ATTACKS[name]
        if base.budget is not None:  # L-inf: (eps, None) points; minimal: its own (None, None), then (None, rmse)
            specs = [((eps, None), base.with_budget(eps)) for eps in sorted({*cfg.sweep_eps, base.budget})]
        else:
            specs = [((None, None), base)] + [((None, r), base.at_rmse(name, r)) for r in sorted(cfg.sweep_rmse)]
        points = []
        for (eps, rmse_target), spec in specs:
            at = f"{255 * eps:.3g}/255" if eps is not None else f"|L2| {rmse_target or 'minimal'}"
            x_adv = generate_adversarial(name, estimator, x, labels, cache, model_id(), cfg.seed, spec=spec)
            undefended = predict(model, x_adv)
            images = to_nhwc(x_adv)
            keys = _keys(images)
            cells = {}
            for d in cfg.sweep_defenses:
                run = run_defense(d, DEFENSES[d], model, images, clean, keys, cache, cfg.draws, cfg.seed,
                                  desc=f"{d} on {name} at {at}")
                cells[d] = score(run, labels, clean_pred, undefended)
                cells[d]["dr_kept_single"] = destruction_rate(clean_runs[d].single, undefended, run.single, labels)
            points.append({"eps": eps, "rmse_target": rmse_target, "rmse_mean": float(rmse(x, x_adv).mean()),
                           "undefended_acc": top1_accuracy(undefended, labels), "defenses": cells})
        paper_l2 = [s.rmse for s in ATTACKS.values() if s.scales == name]  # Table 4.1's |L2| of this attack
        out[name] = {"label": base.label, "norm": "inf" if base.budget is not None else "l2",
                     "own_budget": base.budget, "paper_l2": paper_l2[0] if paper_l2 else None, "points": points}
    return {"n_images": len(labels), "defenses": {d: DEFENSES[d].label for d in cfg.sweep_defenses},
            "clean_acc_single": {d: top1_accuracy(r.single, labels) for d, r in clean_runs.items()},
            "attacks": out}


def _adaptive(cfg, model, cache, x, clean, labels, defenses, sets, keys) -> dict:
    n = len(labels)
    targets = []
    for name in cfg.adaptive_defenses:
        if name == BEST_LOSSY:
            lossy = [d for d in LOSSY_CHANNELS if d in defenses]
            if not lossy:
                continue
            name = max(lossy, key=lambda d: np.mean([defenses[d]["results"][a]["acc_single"]
                                                     for a in cfg.attacks]))
        if name not in targets:
            targets.append(name)
    clean_pred = predict(model, x)
    out = {}
    for name in targets:
        spec = DEFENSES[name]
        eot = cfg.adaptive_eot if spec.stochastic else 1  # EOT copies of a deterministic purifier are all alike
        params = [spec.params, cfg.adaptive_eps, cfg.adaptive_steps, eot, cfg.seed]
        ad_keys = [digest("adaptive", name, params, model_id(), im) for im in x]

        def compute(missing, spec=spec, name=name, eot=eot, ad_keys=ad_keys):  # one batch
            return bpda_eot_pgd(model, spec, x[missing], labels[missing], eps=cfg.adaptive_eps,
                                steps=cfg.adaptive_steps, eot=eot,
                                seed=key_seed(ad_keys[missing[0]], cfg.seed), desc=f"adaptive {name}")

        x_ad = cache.map(f"adaptive/{name}", ad_keys, compute, chunk=cfg.adaptive_batch)
        undefended = predict(model, x_ad)
        run = run_defense(name, spec, model, to_nhwc(x_ad), clean, _keys(to_nhwc(x_ad)), cache, cfg.draws, cfg.seed,
                          desc=f"{name} on adaptive")
        clean_run = run_defense(name, spec, model, clean, clean, keys["clean"][:n], cache, cfg.draws, cfg.seed,
                                desc=f"{name} on clean")
        entry = {"label": spec.label, "eot": eot, "undefended_acc": top1_accuracy(undefended, labels),
                 "rmse_mean": float(rmse(x, x_ad).mean()), "linf_max": float(linf(x, x_ad).max()),
                 "clean": score(clean_run, labels), "adaptive": score(run, labels, clean_pred, undefended)}
        if "pgd" in sets:
            pgd_run = run_defense(name, spec, model, sets["pgd"][:n], clean, keys["pgd"][:n], cache, cfg.draws,
                                  cfg.seed, desc=f"{name} on pgd")
            entry["oblivious"] = score(pgd_run, labels, clean_pred, predict(model, to_nchw(sets["pgd"][:n])))
        out[name] = entry
    return {"eps": cfg.adaptive_eps, "steps": cfg.adaptive_steps, "eot": cfg.adaptive_eot,
            "step_size": 2.5 * cfg.adaptive_eps / cfg.adaptive_steps, "n_images": n, "defenses": out}


# the files of a run: NAME + suffix in the output folder (the last two only for runs with those parts)
OUTPUT_SUFFIXES = {"json": ".json", "md": ".md", "png": "_accuracy_vs_distortion.png",
                   "codecs_png": "_codecs_accuracy_vs_psnr.png", "sweep_png": "_budget_sweep.png"}


def output_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    """Every file a run named ``name`` may write under ``out_dir``, by the keys of ``OUTPUT_SUFFIXES``;
    ValueError for a ``name`` that is not a plain file name (empty, ``.`` or ``..``, a path separator)."""
    if name in ("", ".", "..") or any(c in name for c in ("/", "\\", os.sep, "\0")):
        raise ValueError(f"the output name {name!r} must be a plain file name stem, without a folder")
    return {key: Path(out_dir) / f"{name}{suffix}" for key, suffix in OUTPUT_SUFFIXES.items()}


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """FileExistsError naming those of ``paths`` that exist, unless ``overwrite``; IsADirectoryError for a
    folder in the place of a file, even with ``overwrite``."""
    for path in paths:
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "is a folder, not a result file", str(path))
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"result file(s) exist: {', '.join(existing)}; pass --overwrite to replace them")


def _figure(plot, *args) -> bytes:
    """The PNG bytes of ``plot(*args, file)``."""
    buffer = io.BytesIO()
    plot(*args, buffer)
    return buffer.getvalue()


def write_outputs(results: dict, out_dir: str | Path, name: str = "evaluation",
                  overwrite: bool = False) -> dict[str, Path]:
    """Write ``name``.json, ``name``.md and ``name``_accuracy_vs_distortion.png under ``out_dir`` (and
    ``name``_codecs_accuracy_vs_psnr.png when the run has the Table 3.1 sweeps, ``name``_budget_sweep.png when
    it has a budget sweep). Every file is made in memory first and written atomically; existing files are
    replaced only with ``overwrite`` (FileExistsError before any file is written)."""
    paths = output_paths(out_dir, name)
    contents = {"json": json.dumps(results, indent=1, default=float).encode(),
                "md": report.markdown(results).encode(),
                "png": _figure(report.plot_accuracy_vs_distortion, results)}
    choice = report.table_31_choice(results)
    if choice:
        contents["codecs_png"] = _figure(report.plot_codecs_accuracy_vs_psnr, choice, results)
    if results.get("budget_sweep"):
        contents["sweep_png"] = _figure(report.plot_budget_sweep, results)
    refuse_existing([paths[key] for key in contents], overwrite)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for key, data in contents.items():
        write_file(paths[key], data, overwrite=overwrite)
    return {key: paths[key] for key in contents}
