"""Fixation-prediction ("gaze") model: runtime contracts, the saliency_map dispatcher, integrity, no torch,
saliency metrics against known values and pysaliency, and a tiny training run on synthetic data."""
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import semantic_jpeg
from semantic_jpeg.evaluation import saliency_metrics as sm
from semantic_jpeg.onnx_models.gaze_model import (
    METHODS,
    PACKAGE_DIR,
    GazeModel,
    default_gaze_model,
    load_gaze_model,
    read_gaze_manifest,
)
from semantic_jpeg.onnx_models.manifest import ModelIntegrityError

MANIFEST = PACKAGE_DIR / "efficientnet_lite0_gaze.json"


@pytest.fixture(scope="module")
def model():
    return load_gaze_model(intra_op_num_threads=2)


def grey(height, width, value=128):
    return np.full((height, width, 3), value, np.uint8)


def centre_of_mass(saliency):
    saliency = saliency.astype(np.float64)
    rows, cols = np.indices(saliency.shape)
    total = saliency.sum()
    return (rows * saliency).sum() / total / saliency.shape[0], (cols * saliency).sum() / total / saliency.shape[1]


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (37, 53), (33, 400), (401, 29), (255, 257), (720, 1281)])
def test_map_and_density_have_the_image_size_for_odd_sizes_and_aspect_ratios(model, shape):
    rgb = np.random.default_rng(shape[0]).integers(0, 256, (*shape, 3), dtype=np.uint8)
    saliency = model.saliency_map(rgb)
    assert saliency.shape == shape and saliency.dtype == np.float32
    assert 0.0 <= saliency.min() and saliency.max() <= 1.0 and np.isfinite(saliency).all()
    log_p = model.log_density(rgb)
    assert log_p.shape == shape and log_p.dtype == np.float32
    assert np.exp(log_p.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-3)


def test_inputs_pil_gray_float_and_bgr_agree(model):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (96, 130, 3), dtype=np.uint8)
    reference = model.saliency_map(rgb)
    np.testing.assert_allclose(model.saliency_map(Image.fromarray(rgb)), reference, atol=1e-5)
    np.testing.assert_allclose(model.saliency_map(rgb[:, :, ::-1].copy(), color_order="BGR"), reference, atol=1e-5)
    # float input is rounded to 8 bits like the network input of uint8 images
    np.testing.assert_allclose(model.saliency_map(rgb.astype(np.float32) / 255), reference, atol=1e-5)
    gray = rgb[:, :, 0]
    np.testing.assert_allclose(model.saliency_map(gray), model.saliency_map(np.repeat(gray[:, :, None], 3, 2)),
                               atol=1e-5)


@pytest.mark.parametrize("shape", [(480, 640), (360, 640), (640, 480)])
def test_blank_image_gives_a_centred_map(model, shape):
    saliency = model.saliency_map(grey(*shape))
    row, col = centre_of_mass(saliency)
    assert abs(row - 0.5) < 0.08 and abs(col - 0.5) < 0.08
    peak = np.unravel_index(np.argmax(saliency), shape)
    assert abs(peak[0] / shape[0] - 0.5) < 0.2 and abs(peak[1] / shape[1] - 0.5) < 0.2
    # the centre beats the corners clearly
    assert saliency[shape[0] // 2, shape[1] // 2] > 3 * saliency[:shape[0] // 10, :shape[1] // 10].mean()


def _with_object(shape, top, left, size):
    """Grey canvas with a high-contrast object: a black/white checkered disc with a red centre."""
    rgb = grey(*shape)
    rows, cols = np.indices((size, size))
    disc = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (size / 2) ** 2
    checker = ((rows // max(size // 6, 1) + cols // max(size // 6, 1)) % 2 * 255).astype(np.uint8)
    patch = rgb[top:top + size, left:left + size]
    patch[disc] = checker[disc][:, None]
    centre = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 < (size / 6) ** 2
    patch[centre] = (220, 20, 20)
    return rgb


@pytest.mark.parametrize("where", [(40, 60), (40, 500), (300, 80)])
def test_high_contrast_object_attracts_fixation_mass(model, where):
    shape, size = (450, 800), 110
    top, left = where
    region = (slice(top, top + size), slice(left, left + size))
    with_object = np.exp(model.log_density(_with_object(shape, top, left, size)).astype(np.float64))
    blank = np.exp(model.log_density(grey(*shape)).astype(np.float64))
    assert with_object[region].sum() > 3 * blank[region].sum()
    assert with_object[region].sum() > 0.15
    peak = np.unravel_index(np.argmax(with_object), shape)
    assert top - size // 2 <= peak[0] <= top + 3 * size // 2 and left - size // 2 <= peak[1] <= left + 3 * size // 2


def test_batched_maps_equal_single_maps_in_input_order(model):
    """saliency_maps runs same-shape images in batches (the GPU path): the maps of one-at-a-time runs, to float
    rounding (onnxruntime may pick other kernels for a batch on some CPUs; here they are the same bits)."""
    rng = np.random.default_rng(3)
    shapes = [(120, 160), (90, 200), (120, 160), (121, 161), (300, 100), (120, 160)]
    images = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]
    single = [model.saliency_map(image) for image in images]
    for batch_size in (1, 2, 16):
        batched = model.saliency_maps(images, batch_size=batch_size)
        assert [m.shape for m in batched] == shapes
        for a, b in zip(batched, single):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6, err_msg=f"batch_size {batch_size}")
    grids = model.grid_log_densities(images[:3], batch_size=2)
    for (grid, shape), image in zip(grids, images):
        expected, expected_shape = model.grid_log_density(image)
        assert shape == expected_shape
        np.testing.assert_allclose(grid, expected, rtol=0, atol=1e-6)
    assert model.saliency_maps([]) == []
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            model.saliency_maps(images[:1], batch_size=bad)


def test_own_gaussian_filter_is_scipys_bit_for_bit():
    ndimage = pytest.importorskip("scipy.ndimage")
    from semantic_jpeg.onnx_models.gaze_model import gaussian_filter_nearest

    rng = np.random.default_rng(11)
    for shape, sigma in [((64, 96), 2.88), ((1, 7), 0.3), ((5, 1), 40.0), ((33, 17), 0.1), ((100, 80), 6.5),
                         ((3, 4, 5), 1.2)]:
        array = np.exp(rng.normal(size=shape) * 3)
        expected = ndimage.gaussian_filter(array, sigma, mode="nearest")
        assert np.array_equal(gaussian_filter_nearest(array, sigma), expected), (shape, sigma)


def test_default_map_does_not_import_scipy():
    code = ("import sys, numpy as np, semantic_jpeg; semantic_jpeg.encode(np.zeros((64, 64, 3), np.uint8)); "
            "assert 'scipy' not in sys.modules, sorted(m for m in sys.modules if m.startswith('scipy'))[:5]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shipped_model_declares_a_dynamic_batch(model):
    assert all(isinstance(i.shape[0], str) for i in model.session.get_inputs())
    assert isinstance(model.session.get_outputs()[0].shape[0], str)


def test_update_exported_model_frees_a_batch_1_model_without_changing_its_maps(tmp_path, model):
    onnx = pytest.importorskip("onnx")
    from semantic_jpeg.onnx_models.manifest import sha256_of
    from semantic_jpeg.training.gaze import BATCH_REWRITE, update_exported_model

    manifest = json.loads(MANIFEST.read_text())
    old = onnx.load(str(PACKAGE_DIR / manifest["file"]))
    for value in list(old.graph.input) + list(old.graph.output):  # as the exporter wrote it before
        value.type.tensor_type.shape.dim[0].Clear()
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(old, str(tmp_path / manifest["file"]))
    manifest["sha256"] = sha256_of(tmp_path / manifest["file"])
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    assert GazeModel(tmp_path / "m.json").session.get_inputs()[0].shape[0] == 1
    assert update_exported_model(tmp_path / "m.json") == [BATCH_REWRITE]
    freed = GazeModel(tmp_path / "m.json")  # the manifest's sha256 was updated with the file
    assert freed.session.get_inputs()[0].shape[0] == "batch"
    image = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    np.testing.assert_allclose(freed.saliency_maps([image, image], batch_size=2)[1], model.saliency_map(image),
                               rtol=0, atol=1e-6)
    assert update_exported_model(tmp_path / "m.json") == []


def test_shipped_model_has_its_padding_folded_into_the_convolutions():
    # the traced Pad/Slice chains of TF "SAME" padding took 40% of a map's time (semantic_jpeg.training.onnx_graph)
    onnx = pytest.importorskip("onnx")
    from semantic_jpeg.training.onnx_graph import FOLDED_PADDING, fold_same_padding

    manifest = read_gaze_manifest(MANIFEST)
    assert FOLDED_PADDING in manifest["producer"]["graph_rewrites"]
    graph = onnx.load(str(PACKAGE_DIR / manifest["file"]))
    assert [n.op_type for n in graph.graph.node].count("Pad") == 1  # the readout's edge padding only
    assert fold_same_padding(graph) == 0


@pytest.mark.skipif("CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers(),
                    reason="needs onnxruntime-gpu and a CUDA GPU")
def test_batched_maps_on_the_gpu_match_the_cpu(model):
    gpu = load_gaze_model(providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    if gpu.providers[0] != "CUDAExecutionProvider":
        pytest.skip("onnxruntime could not enable CUDA here")
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(5)]
    for a, b in zip(gpu.saliency_maps(images, batch_size=4), model.saliency_maps(images)):
        np.testing.assert_allclose(a, b, atol=2e-3)


@pytest.mark.parametrize("method", METHODS)
def test_saliency_map_dispatcher_every_method(method):
    rgb = np.random.default_rng(2).integers(0, 256, (61, 97, 3), dtype=np.uint8)
    saliency = semantic_jpeg.saliency_map(rgb, method=method)
    assert saliency.shape == (61, 97) and saliency.dtype == np.float32
    assert 0.0 <= saliency.min() and saliency.max() <= 1.0


def test_default_method_is_gaze_and_log_density_is_exposed():
    rgb = np.random.default_rng(3).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    np.testing.assert_array_equal(semantic_jpeg.saliency_map(rgb), default_gaze_model().saliency_map(rgb))
    log_p = semantic_jpeg.log_density(rgb)
    assert log_p.shape == (64, 80)
    # without the smoothing the map is the density scaled to peak 1 (both resized bilinearly from one grid)
    raw = default_gaze_model().saliency_map(rgb, blur=0)
    ratio = raw / np.exp(log_p.astype(np.float64))
    assert ratio.std() / ratio.mean() < 0.05
    smoothed = semantic_jpeg.saliency_map(rgb)
    assert smoothed.max() == pytest.approx(1.0, abs=0.02) and smoothed.mean() > raw.mean()  # flatter
    with pytest.raises(ValueError, match="blur"):
        default_gaze_model().saliency_map(rgb, blur=-1)


def test_centre_method_is_centred_and_content_free():
    a = semantic_jpeg.saliency_map(grey(90, 160), method="centre")
    b = semantic_jpeg.saliency_map(_with_object((90, 160), 5, 5, 40), method="centre")
    np.testing.assert_array_equal(a, b)
    row, col = centre_of_mass(a)
    assert abs(row - 0.5) < 0.08 and abs(col - 0.5) < 0.08


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid methods: gaze, msroi, aug-msroi, rcam, centre"):
        semantic_jpeg.saliency_map(grey(10, 10), method="deepgaze")


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((0, 10, 3), np.uint8), ValueError, "empty"),
    (np.full((8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
    (np.zeros((8, 8, 3), np.int32), TypeError, "dtype"),
    (np.zeros((8, 8, 4), np.uint8), ValueError, "shape"),
    (np.full((8, 8, 3), 2.0, np.float32), ValueError, r"\[0, 1\]"),
    ("image.png", TypeError, "numpy array"),
])
def test_bad_inputs_raise_clear_errors(model, image, error, message):
    with pytest.raises(error, match=message):
        model.saliency_map(image)
    with pytest.raises(error, match=message):
        semantic_jpeg.saliency_map(image)


def test_bad_color_order_is_refused(model):
    with pytest.raises(ValueError, match="color_order"):
        model.saliency_map(grey(8, 8), color_order="RBG")


def test_corrupted_model_file_is_refused_by_sha256(tmp_path):
    manifest = read_gaze_manifest(MANIFEST)
    shutil.copy(MANIFEST, tmp_path / MANIFEST.name)
    data = bytearray((PACKAGE_DIR / manifest["file"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / manifest["file"]).write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        GazeModel(tmp_path / MANIFEST.name)
    (tmp_path / manifest["file"]).unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        GazeModel(tmp_path / MANIFEST.name)


def test_manifest_records_data_licences_metrics_and_command():
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["format"] == "semantic_jpeg.gaze_model/1"
    assert "MIT" in manifest["training"]["data"]["osie"] and "MIT" in manifest["training"]["data"]["eyecrowd"]
    assert manifest["training"]["command"].startswith("semantic-jpeg train gaze")
    assert manifest["source"]["weights_license"] == "Apache-2.0"
    assert {"auc_judd", "cc", "nss", "ig_bits"} <= set(manifest["metrics"]["nus_scene"])


def test_runtime_path_does_not_import_torch():
    code = ("import sys; sys.modules['torch'] = None; import numpy as np, semantic_jpeg; "
            "m = semantic_jpeg.saliency_map(np.zeros((40, 60, 3), np.uint8)); "
            "d = semantic_jpeg.log_density(np.zeros((40, 60, 3), np.uint8)); "
            "import semantic_jpeg.evaluation.saliency_metrics; print(m.shape, d.shape)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(40, 60) (40, 60)"


# -- metrics --------------------------------------------------------------------------------------------------
def _pysaliency_metrics():
    """pysaliency's metric functions loaded from its files (its package __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("pysaliency")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pysaliency not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    modules = {}
    for name in ("metrics", "numba_utils"):
        module_spec = importlib.util.spec_from_file_location(f"_pysal_{name}", folder / f"{name}.py")
        module = importlib.util.module_from_spec(module_spec)
        try:
            module_spec.loader.exec_module(module)
        except ImportError as exc:
            pytest.skip(f"pysaliency module {name} does not load: {exc}")
        modules[name] = module
    return modules


def _random_case(seed=0):
    rng = np.random.default_rng(seed)
    saliency = rng.random((40, 60)) + np.outer(np.hanning(40), np.hanning(60))
    xy = np.column_stack([rng.uniform(0, 60, 30), rng.uniform(0, 40, 30)])
    return saliency, xy


def test_metrics_match_pysaliency(monkeypatch):
    pysal = _pysaliency_metrics()
    if not hasattr(np, "trapz"):  # pysaliency 0.2.22 still calls np.trapz, removed in NumPy 2.4
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    saliency, xy = _random_case()
    rows, cols = sm.fixation_indices(xy, saliency.shape)
    reference = sm.fixation_density(xy, saliency.shape, 3.0)
    assert sm.nss(saliency, xy) == pytest.approx(pysal["metrics"].NSS(saliency, cols, rows).mean(), rel=1e-9)
    assert sm.cc(saliency, reference) == pytest.approx(pysal["metrics"].CC(saliency, reference), rel=1e-9)
    assert sm.kld(saliency, reference) == pytest.approx(pysal["metrics"].MIT_KLDiv(saliency, reference), rel=1e-6)
    other = np.random.default_rng(5).random((200, 2)) * [60, 40]
    neg_rows, neg_cols = sm.fixation_indices(other, saliency.shape)
    expected = pysal["numba_utils"].general_roc_numba(saliency[rows, cols], saliency[neg_rows, neg_cols])[0]
    assert sm.shuffled_auc(saliency, xy, other) == pytest.approx(expected, rel=1e-9)
    fixated = np.zeros(saliency.shape, bool)
    fixated[rows, cols] = True
    judd = pysal["numba_utils"].general_roc_numba(saliency[fixated], saliency[~fixated], judd=1)[0]
    assert sm.auc_judd(saliency, xy) == pytest.approx(judd, abs=1e-9)


def test_metrics_known_values():
    saliency, xy = _random_case(1)
    rows, cols = sm.fixation_indices(xy, saliency.shape)
    perfect = np.zeros(saliency.shape)
    perfect[rows, cols] = 1.0
    assert sm.auc_judd(perfect, xy) == pytest.approx(1.0)
    assert sm.auc_judd(1.0 - perfect + 1e-9 * np.random.default_rng(0).random(perfect.shape), xy) < 0.05
    noise = np.random.default_rng(2).random((200, 300))
    many = np.random.default_rng(3).random((5000, 2)) * [300, 200]
    assert sm.auc_judd(noise, many) == pytest.approx(0.5, abs=0.03)
    assert sm.shuffled_auc(noise, many[:2500], many[2500:]) == pytest.approx(0.5, abs=0.03)
    assert sm.roc_auc([1.0, 1.0], [1.0, 1.0]) == 0.5  # ties count one half
    assert sm.cc(saliency, saliency) == pytest.approx(1.0)
    assert sm.cc(saliency, -saliency) == pytest.approx(-1.0)
    assert sm.kld(saliency, saliency) == pytest.approx(0.0, abs=1e-9)
    # NSS of a map that is 1 on exactly the fixated pixels and 0 elsewhere: (1 - m) / s
    m = perfect.mean()
    assert sm.nss(perfect, xy) == pytest.approx((1 - m) / perfect.std())
    uniform = np.full(saliency.shape, -np.log(saliency.size))
    assert sm.log_likelihood(uniform, xy) == pytest.approx(0.0, abs=1e-12)
    # a density twice the uniform on the fixated half: +1 bit per fixation
    half = np.full(saliency.shape, 1e-12)
    half[:, :30] = 1.0
    left = xy[xy[:, 0] < 30]
    assert sm.information_gain(sm.log_density_from_map(half), uniform, left) == pytest.approx(1.0)
    gold = sm.gold_standard_log_density(xy[:10], saliency.shape, 2.0, uniform)
    assert np.exp(gold).sum() == pytest.approx(1.0)


def test_metrics_refuse_bad_inputs():
    with pytest.raises(ValueError, match="2-D"):
        sm.nss(np.zeros(5), [[0, 0]])
    with pytest.raises(ValueError, match="NaN"):
        sm.cc(np.full((3, 3), np.nan), np.ones((3, 3)))
    with pytest.raises(ValueError, match="no fixations"):
        sm.auc_judd(np.ones((3, 3)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="shape"):
        sm.cc(np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="normalised"):
        sm.log_likelihood(np.zeros((3, 3)), [[1, 1]])


# -- training (torch) -------------------------------------------------------------------------------------------
def _synthetic_dataset(root: Path, n: int, seed: int) -> None:
    """Grey 4:3 images with one high-contrast object; observers fixate the object."""
    rng = np.random.default_rng(seed)
    (root / "stimuli").mkdir(parents=True)
    rows = ["image,subject,order,x,y,duration_ms"]
    images = ["image,orig_width,orig_height,width,height"]
    for i in range(n):
        top, left = int(rng.integers(0, 80)), int(rng.integers(0, 120))
        Image.fromarray(_with_object((120, 160), top, left, 40)).save(root / "stimuli" / f"{i}.png")
        images.append(f"{i}.png,160,120,160,120")
        for subject in range(3):
            for order in range(4):
                x, y = left + 20 + rng.normal(0, 5), top + 20 + rng.normal(0, 5)
                rows.append(f"{i}.png,{subject},{order},{np.clip(x, 0, 159):.1f},{np.clip(y, 0, 119):.1f},200")
    (root / "fixations.csv").write_text("\n".join(rows) + "\n")
    (root / "images.csv").write_text("\n".join(images) + "\n")


def test_training_smoke_run_resumes_exports_and_loads(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    from semantic_jpeg.training import gaze

    _synthetic_dataset(tmp_path / "data" / "train_a", 8, 0)
    _synthetic_dataset(tmp_path / "data" / "val", 4, 1)
    argv = ["--data-root", str(tmp_path / "data"), "--train", "train_a", "--val", "val", "--cache",
            str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--scales", "128", "64", "--hidden", "4",
            "--epochs", "1", "--batch-size", "4", "--val-every", "1", "--no-progress", "--threads", "1"]
    assert gaze.main(argv) == 0
    with pytest.raises(FileExistsError, match="--resume"):
        gaze.main(argv)
    argv[argv.index("--epochs") + 1] = "4"
    assert gaze.main(argv + ["--resume", "--export", "--model-dir", str(tmp_path / "model")]) == 0
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_ll_bits"] > history[0]["train_ll_bits"]
    trained = GazeModel(tmp_path / "model" / "efficientnet_lite0_gaze.json", intra_op_num_threads=1)
    assert [i.shape[0] for i in trained.session.get_inputs()] == ["batch", "batch"]  # exported with a free batch
    exported = read_gaze_manifest(tmp_path / "model" / "efficientnet_lite0_gaze.json")
    from semantic_jpeg.training import onnx_graph
    assert exported["producer"]["graph_rewrites"] == [onnx_graph.FOLDED_PADDING]
    assert gaze.update_exported_model(tmp_path / "model" / "efficientnet_lite0_gaze.json") == []  # nothing to do
    # a model exported before the exporter folded the padding: the update folds it and keeps the maps
    image = _with_object((90, 200), 10, 140, 40)
    with monkeypatch.context() as patch:
        patch.setattr(onnx_graph, "fold_same_padding", lambda model: 0)
        assert gaze.main(argv + ["--resume", "--export", "--model-dir", str(tmp_path / "old")]) == 0
    old_manifest = tmp_path / "old" / "efficientnet_lite0_gaze.json"
    old_maps = GazeModel(old_manifest, intra_op_num_threads=1).saliency_map(image)
    assert gaze.update_exported_model(old_manifest) == [onnx_graph.FOLDED_PADDING]
    updated = GazeModel(old_manifest, intra_op_num_threads=1)  # the manifest's sha256 follows the new file
    nodes = onnx.load(str(old_manifest.parent / updated.manifest["file"])).graph.node
    assert [n.op_type for n in nodes].count("Pad") == 1  # the readout's edge pad only
    np.testing.assert_allclose(updated.saliency_map(image), old_maps, atol=1e-4)
    saliency = trained.saliency_map(image)
    assert saliency.shape == (90, 200)
    # ONNX export matches the torch readout on the same input
    import torch

    readout = gaze.GazeReadout(2, (4,))
    readout.load_state_dict(torch.load(tmp_path / "run" / "readout.pt", weights_only=False)["readout"])
    from semantic_jpeg.training.gaze_data import BackboneTaps
    module = gaze.GazeExportModule(BackboneTaps(), readout.eval())
    feeds = trained.feeds(image)
    with torch.no_grad():
        expected = module(*[torch.from_numpy(feeds[name]) for name in ("image_s128", "image_s64")])[0].numpy()
    (actual,) = trained.session.run(["log_density"], feeds)
    np.testing.assert_allclose(actual[0], expected, atol=1e-3)


def test_training_options_are_checked(tmp_path):
    pytest.importorskip("torch")
    from semantic_jpeg.training import gaze

    base = ["--data-root", str(tmp_path), "--out", str(tmp_path / "run"), "--no-progress"]
    with pytest.raises(ValueError, match="--scales"):
        gaze.main(base + ["--scales", "300"])
    with pytest.raises(ValueError, match="--epochs"):
        gaze.main(base + ["--epochs", "0"])
    with pytest.raises(FileNotFoundError, match="osie"):
        gaze.main(base)


def test_cli_lists_the_gaze_trainer():
    from semantic_jpeg.cli import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "gaze", "--help"])
    assert exit_info.value.code == 0


def test_cam_model_list_does_not_offer_the_gaze_model():
    from semantic_jpeg.onnx_models import available_models

    assert "efficientnet_lite0_gaze" not in available_models()
    assert "efficientnet_lite0_cam" in available_models()


def test_export_needs_an_explicit_model_dir(tmp_path):
    """--export never writes into the installed package by default."""
    pytest.importorskip("torch")
    from semantic_jpeg.training import gaze

    with pytest.raises(ValueError, match="--model-dir"):
        gaze.main(["--data-root", str(tmp_path), "--out", str(tmp_path / "run"), "--export", "--no-progress"])
    assert not (tmp_path / "run" / "readout.pt").exists()
