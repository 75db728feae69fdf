"""Shipped saliency models: onnxruntime vs torch, predictions, localisation, Aug-MSROI seeding, integrity,
bad inputs. Uses only scikit-image's bundled images."""
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image
from skimage import data

from semantic_jpeg.onnx_models import ModelIntegrityError, available_models, default_model, load_model, read_manifest
from semantic_jpeg.onnx_models.cam_model import PACKAGE_DIR

MODEL = "efficientnet_lite0_cam"


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL, intra_op_num_threads=2)


def test_runtime_imports_without_torch():
    code = ("import sys; import semantic_jpeg.onnx_models as m; m.default_model(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_importing_the_package_does_not_import_scipy():
    # scipy.ndimage took 0.2 s of every command's, worker's and Ray actor's start; only the default map needs it
    code = ("import sys, semantic_jpeg, semantic_jpeg.cli, semantic_jpeg.codec; "
            "assert 'scipy' not in sys.modules, 'scipy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_model_listed_and_providers_reported(model):
    assert MODEL in available_models()
    assert model.providers == model.session.get_providers()
    assert "CPUExecutionProvider" in model.providers
    assert default_model() is default_model()


def test_onnxruntime_matches_torch(model):
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    from semantic_jpeg.training.efficientnet import EfficientNetLite0
    from semantic_jpeg.training.export import CamExportModule

    module = CamExportModule(EfficientNetLite0(pretrained=True)).eval()
    rng = np.random.default_rng(0)
    for n, h, w, noisy in [(1, 224, 224, False), (2, 96, 128, True), (1, 160, 288, True)]:
        image = rng.standard_normal((n, 3, h, w), dtype=np.float32)
        noises = [rng.standard_normal((n, s["channels"], -(-h // s["stride"]), -(-w // s["stride"])),
                                      dtype=np.float32) * (0.3 if noisy else 0.0)
                  for s in model.manifest["noise_inputs"]]
        logits, features = model.forward(image, noises)
        with torch.no_grad():
            ref_logits, ref_features = module(torch.from_numpy(image), *map(torch.from_numpy, noises))
        assert features.shape == (n, 1280, -(-h // 32), -(-w // 32))
        np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(features, ref_features.numpy(), atol=1e-4, rtol=0)


def test_sides_that_are_not_multiples_of_32_are_refused(model):
    # the shipped graph has its TF "SAME" padding folded into the convolutions: exact on multiples of 32 only
    assert model.manifest["input"]["size_multiple_required"]
    with pytest.raises(ValueError, match="multiples of 32.*97x128"):
        model.forward(np.zeros((1, 3, 97, 128), np.float32))
    batch, _ = model.preprocess(np.zeros((97, 130, 3), np.uint8))
    assert batch.shape[2] % 32 == 0 and batch.shape[3] % 32 == 0
    assert model.forward(batch)[0].shape == (1, 1000)


def test_one_image_broadcasts_against_a_noise_batch(model):
    """Aug-MSROI's batch: one image with M noise draws equals M copies of the image with the same draws."""
    rng = np.random.default_rng(2)
    h, w = 96, 160
    image = rng.standard_normal((1, 3, h, w), dtype=np.float32)
    noises = [rng.standard_normal((3, s["channels"], -(-h // s["stride"]), -(-w // s["stride"])), dtype=np.float32)
              * 0.3 for s in model.manifest["noise_inputs"]]
    logits, features = model.forward(image, noises)
    ref_logits, ref_features = model.forward(np.repeat(image, 3, axis=0), noises)
    assert logits.shape == (3, 1000) and features.shape == (3, 1280, 3, 5)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(features, ref_features, atol=1e-4, rtol=0)
    assert np.abs(logits[0] - logits[1]).max() > 1e-3  # the copies differ
    with pytest.raises(ValueError, match="noise batch 3 does not match the image batch 2"):
        model.forward(np.repeat(image, 2, axis=0), noises)


def test_cam_head_reproduces_logits(model):
    batch, _ = model.preprocess(data.astronaut())
    logits, features = model.forward(batch)
    cams = model.class_activation_maps(logits[0], features[0], np.eye(1000, dtype=np.float32))
    np.testing.assert_allclose(cams.mean(axis=(1, 2)), logits[0], atol=1e-3)


@pytest.mark.parametrize("name, accepted", [("chelsea", range(281, 286)), ("coffee", (967, 968, 504)),
                                            ("rocket", (657, 744, 812))])
def test_top5_on_skimage_images(model, name, accepted):
    top = model.predict_topk(getattr(data, name)(), 5)
    assert len(top) == 5 and all(isinstance(c, int) and isinstance(n, str) for c, n, _ in top)
    assert [p for _, _, p in top] == sorted((p for _, _, p in top), reverse=True)
    assert any(c in accepted for c, _, _ in top), top


def test_bgr_and_pil_inputs_agree(model):
    rgb = data.chelsea()
    reference = model.msroi_map(rgb)
    np.testing.assert_allclose(model.msroi_map(np.ascontiguousarray(rgb[:, :, ::-1]), color_order="BGR"),
                               reference, atol=1e-5)
    np.testing.assert_allclose(model.msroi_map(Image.fromarray(rgb)), reference, atol=1e-5)
    # float input is resized in float (the uint8 path rounds to 0..255): inputs agree within one grey level
    np.testing.assert_allclose(model.preprocess(rgb.astype(np.float32) / 255)[0], model.preprocess(rgb)[0],
                               atol=1.0 / 128)


def _two_object_canvas():
    """Cat (chelsea) and espresso (coffee) photos, 400x266 each, pasted on a plain 1280x720 grey canvas."""
    cat = np.asarray(Image.fromarray(data.chelsea()).resize((400, 266)))
    cup = np.asarray(Image.fromarray(data.coffee()).resize((400, 266)))
    canvas = np.full((720, 1280, 3), 128, np.uint8)
    boxes = {"cat": (slice(80, 346), slice(100, 500)), "cup": (slice(380, 646), slice(780, 1180))}
    canvas[boxes["cat"]], canvas[boxes["cup"]] = cat, cup
    return canvas, boxes


def test_localisation_msroi_covers_both_objects_rcam_favours_top1(model):
    canvas, boxes = _two_object_canvas()
    assert model.predict_topk(canvas, 1)[0][0] in range(281, 286)  # the cat is the top-1 object

    def mass(saliency):
        assert saliency.shape == canvas.shape[:2] and saliency.dtype == np.float32
        assert 0.0 <= saliency.min() and saliency.max() <= 1.0
        return {name: float(saliency[box].sum() / saliency.sum()) for name, box in boxes.items()}

    # each box is 11.5% of the canvas; MS-ROI must give each >= 15% of its mass and both >= 40% together
    msroi = mass(model.msroi_map(canvas, working_size=320))
    assert min(msroi.values()) >= 0.15 and sum(msroi.values()) >= 0.40, msroi
    aug = mass(model.aug_msroi_map(canvas, working_size=320, seed=0))
    assert min(aug.values()) >= 0.15 and sum(aug.values()) >= 0.40, aug
    # R-CAM (1/2^i weights over fine classes, all cats on top) puts at least twice as much on the cat
    rcam = mass(model.rcam_map(canvas, working_size=320))
    assert rcam["cat"] >= 2 * rcam["cup"] and rcam["cup"] < msroi["cup"], (rcam, msroi)


def test_maps_full_frame_any_aspect(model):
    for shape in [(50, 700, 3), (333, 41), (1, 1, 3)]:
        image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        for saliency in (model.msroi_map(image), model.aug_msroi_map(image, n=2, seed=0), model.rcam_map(image)):
            assert saliency.shape == shape[:2] and saliency.dtype == np.float32
            assert np.isfinite(saliency).all() and 0 <= saliency.min() and saliency.max() <= 1


def test_aug_msroi_seeded_is_deterministic(model):
    image = data.coffee()
    first = model.aug_msroi_map(image, n=4, seed=123)
    np.testing.assert_array_equal(first, model.aug_msroi_map(image, n=4, seed=123))
    assert np.abs(first - model.aug_msroi_map(image, n=4, seed=124)).max() > 1e-3
    assert np.abs(first - model.msroi_map(image)).max() > 1e-3  # the perturbations do something


def test_session_shared_across_threads(model):
    images = [data.chelsea(), data.coffee(), data.rocket(), data.astronaut()]
    expected = [model.msroi_map(image) for image in images]
    results = [None] * len(images)

    def work(i):
        results[i] = model.msroi_map(images[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_tampered_model_file_is_refused(tmp_path):
    manifest = read_manifest(PACKAGE_DIR / f"{MODEL}.json")
    for name in (manifest["file"], manifest["cam"]["head_file"], manifest["classes"]["table"], f"{MODEL}.json"):
        shutil.copy(PACKAGE_DIR / name, tmp_path / name)
    assert load_model(tmp_path / f"{MODEL}.json").predict_topk(data.chelsea(), 1)[0][0] in range(281, 286)
    onnx_file = tmp_path / manifest["file"]
    blob = bytearray(onnx_file.read_bytes())
    blob[len(blob) // 2] ^= 0x01  # flip one bit of a weight
    onnx_file.write_bytes(bytes(blob))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_model(tmp_path / manifest["file"])
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown model"):
        load_model("no_such_model")
    broken = json.loads((PACKAGE_DIR / f"{MODEL}.json").read_text())
    broken["format"] = "other"
    (tmp_path / "other.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="format"):
        load_model(tmp_path / "other.json")


def _tiny_model_without_noise_inputs(folder):
    """A user CAM model with no activation noise points: one 32x32 stride-32 conv to 4 features, 3 classes."""
    pytest.importorskip("onnx")
    from tiny_cam_model import write_tiny_cam_files

    from semantic_jpeg.onnx_models import write_manifest

    write_tiny_cam_files(folder, seed=5)
    return write_manifest(
        folder / "tiny.json", name="tiny", version="0", onnx_file="tiny.onnx",
        input_spec={"name": "image", "channels": "RGB", "dtype": "float32", "layout": "NCHW", "mean": 127.0,
                    "std": 128.0, "size_multiple": 32},
        outputs={"logits": "logits", "features": "features", "feature_stride": 32},
        cam={"type": "linear", "head_file": "tiny.head.npy"}, classes={"count": 3},
        defaults={"working_size": 128, "grouping": "fine", "top_k": 2, "aug_n": 3, "input_noise": 0.5,
                  "activation_noise": 0.3, "classify_size": 128}, source={})


def test_user_model_without_noise_inputs_gets_input_draws_per_copy(tmp_path):
    _tiny_model_without_noise_inputs(tmp_path)
    tiny = load_model(tmp_path / "tiny.onnx", providers=["CPUExecutionProvider"])
    image = data.coffee()
    batch, _ = tiny.preprocess(image)
    logits, _ = tiny.aug_msroi_batch(batch, 3, np.random.default_rng(0), 0.5, 0.3)
    assert logits.shape == (3, 3) and np.abs(logits[0] - logits[1]).max() > 1e-4  # n distinct input draws
    saliency = tiny.aug_msroi_map(image, seed=0)
    assert saliency.shape == image.shape[:2] and 0 <= saliency.min() and 0.9 < saliency.max() <= 1
    np.testing.assert_array_equal(saliency, tiny.aug_msroi_map(image, seed=0))


@pytest.mark.parametrize("image, error, match", [
    (np.zeros((0, 10, 3), np.uint8), ValueError, "empty"),
    (np.zeros((10, 10, 4), np.uint8), ValueError, "alpha"),
    (np.zeros((10, 10, 3), np.int32), TypeError, "dtype"),
    (np.full((10, 10, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.full((10, 10, 3), 2.0, np.float32), ValueError, r"\[0, 1\]"),
    (np.zeros((2, 10, 10, 3), np.uint8), ValueError, "shape"),
    ([[0, 1], [2, 3]], TypeError, "PIL.Image.Image or a numpy array"),
    (Image.new("I", (8, 8)), ValueError, "32-bit"),
    (Image.new("CMYK", (8, 8)), ValueError, "ICC"),
    (Image.new("RGBA", (8, 8)), ValueError, "alpha"),
    (Image.new("LA", (8, 8)), ValueError, "alpha"),
])
def test_bad_inputs_raise_clear_errors(model, image, error, match):
    with pytest.raises(error, match=match):
        model.msroi_map(image)


def test_bad_options_raise_clear_errors(model):
    image = data.chelsea()
    with pytest.raises(ValueError, match="color_order"):
        model.msroi_map(image, color_order="RBG")
    with pytest.raises(ValueError, match="grouping"):
        model.msroi_map(image, grouping="nope")
    with pytest.raises(ValueError, match="working_size"):
        model.msroi_map(image, working_size=100)
    with pytest.raises(ValueError, match="k must"):
        model.rcam_map(image, k=0)
    with pytest.raises(ValueError, match="n must"):
        model.aug_msroi_map(image, n=0)
    with pytest.raises(ValueError, match="noise"):
        model.aug_msroi_map(image, input_noise=float("nan"))
    with pytest.raises(ValueError, match="threshold"):
        model.msroi_map(image, threshold=2.0)


def test_alpha_is_refused_like_the_codec_and_flatten_alpha_composites(model):
    """One alpha policy across the package (semantic_jpeg.image_input): refused with a message naming the fix;
    flatten_alpha composites over white (or another colour)."""
    from semantic_jpeg.image_input import flatten_alpha

    rgba = Image.new("RGBA", (64, 48), (0, 0, 0, 0))  # fully transparent -> white
    white = Image.new("RGB", (64, 48), (255, 255, 255))
    with pytest.raises(ValueError, match="flatten_alpha"):
        model.rcam_map(rgba)
    np.testing.assert_array_equal(model.rcam_map(flatten_alpha(rgba)), model.rcam_map(white))


def test_16_bit_images_read_as_8_bit(model):
    """I;16 PIL images and uint16 arrays are scaled to 8 bits (round(v / 257)), as the codec does (before: the
    models refused them)."""
    grey = np.asarray(Image.fromarray(data.chelsea()).convert("L"))
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    np.testing.assert_array_equal(model.msroi_map(sixteen), model.msroi_map(grey))
    np.testing.assert_array_equal(model.msroi_map(grey.astype(np.uint16) * 257), model.msroi_map(grey))


def test_cli_maps_and_predict(tmp_path, capsys):
    import argparse

    from semantic_jpeg.onnx_models import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    source = tmp_path / "cat.png"
    Image.fromarray(data.chelsea()).save(source)
    args = parser.parse_args(["maps", str(source), "-m", "all", "--overlay", "-o", str(tmp_path / "out")])
    assert args.func(args) == 0
    saliency = np.asarray(Image.open(tmp_path / "out" / "cat_msroi.png"))
    assert saliency.shape == data.chelsea().shape[:2] and saliency.max() >= 200
    assert (tmp_path / "out" / "cat_rcam_overlay.png").is_file()
    args = parser.parse_args(["predict", str(source), "-k", "2"])
    assert args.func(args) == 0
    assert "Egyptian_cat" in capsys.readouterr().out


def test_cli_maps_flattens_alpha_files_over_white(tmp_path):
    """The library refuses alpha (one policy); the command line reads a PNG with alpha as shown on white."""
    import argparse

    from semantic_jpeg.onnx_models import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    rgba = np.dstack([data.chelsea(), np.full(data.chelsea().shape[:2], 255, np.uint8)])
    rgba[:50, :, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "cat.png")
    args = parser.parse_args(["maps", str(tmp_path / "cat.png"), "-m", "msroi", "-o", str(tmp_path / "out")])
    assert args.func(args) == 0
    flat = np.asarray(Image.open(tmp_path / "out" / "cat_msroi.png"))
    from semantic_jpeg.image_input import flatten_alpha

    expected = default_model().msroi_map(flatten_alpha(rgba))
    np.testing.assert_allclose(flat / 255.0, expected, atol=1 / 255 + 1e-6)


@pytest.mark.parametrize("shape,out", [((4, 7), (1080, 1920)), ((7, 7), (300, 451)), ((5, 3), (17, 9)),
                                       ((1, 1), (10, 10)), ((3, 5), (3, 40)), ((9, 9), (4, 20))])
def test_resize_map_equals_pillow_bilinear(shape, out):
    from PIL import Image

    from semantic_jpeg.onnx_models.image_input import resize_map
    m = np.random.default_rng(0).random(shape).astype(np.float32)
    expect = np.asarray(Image.fromarray(m).resize(out[::-1], Image.BILINEAR))
    np.testing.assert_allclose(resize_map(m, *out), expect, atol=1e-6)


def test_manifest_values_that_would_give_wrong_or_nan_maps_are_refused_on_load(tmp_path):
    """A CAM type the runtime does not know, a zero or NaN std, a zero size multiple: ValueError naming the field
    when the model loads, not a NaN map or a ZeroDivisionError at the first call."""
    from semantic_jpeg.onnx_models import cam_model

    source = cam_model._manifest_path(cam_model.DEFAULT_MODEL)
    for name in os.listdir(source.parent):
        if name.startswith(source.stem) or name.endswith(".tsv"):
            shutil.copy(source.parent / name, tmp_path / name)
    manifest = json.loads(source.read_text())
    for change, field in [(("cam", "type", "Linear"), "cam.type"), (("input", "std", 0), "input.std"),
                          (("input", "mean", float("nan")), "input.mean"), (("input", "size_multiple", 0),
                                                                             "input.size_multiple")]:
        bad = json.loads(json.dumps(manifest))
        bad[change[0]][change[1]] = change[2]
        path = tmp_path / f"{source.stem}.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            cam_model.load_model(path)
    assert manifest["noise_inputs"]  # the shipped graph has them: a manifest that leaves them out is refused
    path.write_text(json.dumps({**manifest, "noise_inputs": []}))
    with pytest.raises(ValueError, match="declares the inputs"):
        cam_model.load_model(path)


def test_gaze_manifest_fields_are_checked_on_load(tmp_path):
    from semantic_jpeg.onnx_models import gaze_model

    source = gaze_model.PACKAGE_DIR / f"{gaze_model.DEFAULT_GAZE_MODEL}.json"
    manifest = json.loads(source.read_text())
    shutil.copy(source.parent / manifest["file"], tmp_path / manifest["file"])
    cases = [(lambda m: m["input"].pop("mean"), "input.mean"), (lambda m: m["input"].update(std=0), "input.std"),
             (lambda m: m["output"].pop("name"), "output.name"), (lambda m: m.update(inputs=[]), "inputs"),
             (lambda m: m["centre_log_prior"].update(grid=[[float("nan")]]), "centre_log_prior"),
             (lambda m: m["centre_log_prior"].update(grid=[]), "centre_log_prior")]
    for change, field in cases:
        bad = json.loads(json.dumps(manifest))
        change(bad)
        path = tmp_path / "gaze.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=field.replace(".", r"\.")):
            gaze_model.load_gaze_model(path)


def test_providers_and_threads_are_read_as_onnxruntime_takes_them():
    import warnings

    from semantic_jpeg.onnx_models import cam_model

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no spurious "did not enable" warning
        for providers in ("CPUExecutionProvider", [("CPUExecutionProvider", {})]):
            assert cam_model.load_model(providers=providers, intra_op_num_threads=np.int64(1)).providers == \
                ["CPUExecutionProvider"]
    for threads in (True, -1, 2 ** 31, 1.5):
        with pytest.raises(ValueError, match="intra_op_num_threads"):
            cam_model.load_model(intra_op_num_threads=threads)
