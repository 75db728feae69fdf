"""Run a defense over image sets and score it: per image, ``draws`` predictions of the purified image and the
purification's distortion of draw 0 against the clean image (RMSE, PSNR, SSIM), cached on disk."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .cache import ArrayCache, digest
from .defenses import DefenseSpec
from .metrics import destruction_rate, majority_vote, top1_accuracy
from .model import predict, to_nchw

QUALITY = ("rmse", "psnr", "ssim")


@dataclass
class DefenseRun:
    """Predictions (draws x images) and distortion of draw 0 w.r.t. the clean images (images x 3)."""
    preds: np.ndarray
    quality: np.ndarray

    @property
    def single(self) -> np.ndarray:
        return self.preds[0]

    @property
    def ensemble(self) -> np.ndarray:
        return majority_vote(self.preds)


def distortion(clean: np.ndarray, purified: np.ndarray) -> np.ndarray:
    """RMSE, PSNR (dB, peak 1) and SSIM (scikit-image, data range 1) of one HxWx3 image pair in [0,1]."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    err = float(np.sqrt(np.mean((clean.astype(np.float64) - purified) ** 2)))
    psnr = peak_signal_noise_ratio(clean, purified, data_range=1.0) if err > 0 else float("inf")
    return np.array([err, psnr, structural_similarity(clean, purified, data_range=1.0, channel_axis=-1)])


def rcam_maps(images: np.ndarray) -> np.ndarray:
    """R-CAM (Prakash et al., CVPR 2018; thesis eq. 4.5) of each float32 RGB image from the shipped model,
    (N, H, W) in [0, 1]."""
    from semantic_jpeg.defense_filters.saliency import resolve_saliency

    return resolve_saliency("rcam", images, color_order="RGB")


def run_defense(name: str, spec: DefenseSpec, model, images: np.ndarray, clean: np.ndarray, image_keys: list[str],
                cache: ArrayCache, draws: int = 10, seed: int = 0, desc: str = "") -> DefenseRun:
    """Purify float32 RGB NHWC ``images`` (clean or adversarial; ``clean`` are their originals) ``draws`` times
    (once if the defense is deterministic) and classify. Each image's draws use a Generator seeded from
    ``seed`` and the image's cache key (image, defense, parameters and ``draws``), so results do not depend on
    batching or on what was cached before; another ``draws`` draws other noise, its draw 0 included."""
    draws = min(draws, spec.max_draws or draws) if spec.stochastic else 1
    keys = [digest("defense", name, spec.params, draws, seed, key) for key in image_keys]

    make = functools.cache(spec.make)  # on the first uncached image only

    def compute(missing: list[int]) -> np.ndarray:
        apply = make()
        out = []
        for i in missing:
            rng = np.random.default_rng([seed, int(keys[i][:15], 16)])
            image = images[i:i + 1]
            overrides = {"saliency": rcam_maps(image)} if spec.rcam else {}
            purified = np.concatenate([apply(image, rng, **overrides) for _ in range(draws)])
            preds = predict(model, to_nchw(purified))
            out.append(np.concatenate([preds.astype(np.float64), distortion(clean[i], purified[0])]))
        return np.stack(out)

    record = cache.map(f"defenses/{name}", keys, compute, chunk=1, desc=desc or f"defense {name}")
    return DefenseRun(preds=record[:, :draws].T.astype(np.int64), quality=record[:, draws:])


def score(run: DefenseRun, labels: np.ndarray, clean_pred: np.ndarray | None = None,
          adv_pred: np.ndarray | None = None) -> dict:
    """Top-1 accuracy single draw and Ens-T; with the undefended predictions on clean and adversarial images,
    the destruction rate (Prakash et al., DCC 2018) single and Ens-T; mean distortion vs the clean images."""
    result = {"acc_single": top1_accuracy(run.single, labels), "acc_ens": top1_accuracy(run.ensemble, labels),
              "draws": int(run.preds.shape[0])}
    if adv_pred is not None:
        result["dr_single"] = destruction_rate(clean_pred, adv_pred, run.single, labels)
        result["dr_ens"] = destruction_rate(clean_pred, adv_pred, run.ensemble, labels)
    result.update({q: float(np.mean(run.quality[:, j])) for j, q in enumerate(QUALITY)})
    return result
