"""Model manifests: relative paths as the training CLI passes them, and checks on load that name the key."""
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_cam_model import write_tiny_cam_files

from semantic_jpeg.onnx_models.manifest import read_manifest, write_manifest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _write(folder, onnx_file, head_file, defaults=None):
    return write_manifest(
        folder / "tiny.json", name="tiny", version="0", onnx_file=onnx_file,
        input_spec={"name": "image", "channels": "RGB", "dtype": "float32", "layout": "NCHW", "mean": 127.0,
                    "std": 128.0, "size_multiple": 32},
        outputs={"logits": "logits", "features": "features", "feature_stride": 32},
        cam={"type": "linear", "head_file": head_file}, classes={"count": 3}, defaults=defaults or {}, source={})


def test_relative_paths_from_the_working_directory(tmp_path, monkeypatch):
    """`train msroi --out runs/msroi` passes runs/msroi/NAME.onnx: it must not become runs/msroi/runs/msroi/..."""
    monkeypatch.chdir(tmp_path)
    write_tiny_cam_files(Path("runs/msroi"), seed=1)
    manifest = _write(Path("runs/msroi"), "runs/msroi/tiny.onnx", Path("runs/msroi/tiny.head.npy"))
    assert manifest["file"] == "tiny.onnx" and manifest["cam"]["head_file"] == "tiny.head.npy"
    manifest = _write(Path("runs/msroi"), "tiny.onnx", "tiny.head.npy")  # names in the manifest's folder
    assert manifest["file"] == "tiny.onnx"
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        _write(Path("runs/msroi"), "missing.onnx", "tiny.head.npy")


def test_missing_optional_keys_get_defaults_and_the_model_runs(tmp_path):
    from semantic_jpeg.onnx_models import load_model

    write_tiny_cam_files(tmp_path, seed=1)
    _write(tmp_path, "tiny.onnx", "tiny.head.npy", defaults={"working_size": 64})  # no grouping, top_k, aug_n ...
    manifest = json.loads((tmp_path / "tiny.json").read_text())
    for key in ("noise_inputs", "source", "producer", "description"):
        manifest.pop(key, None)
    (tmp_path / "tiny.json").write_text(json.dumps(manifest))
    model = load_model(tmp_path / "tiny.json", providers=["CPUExecutionProvider"])
    assert model.defaults["working_size"] == 64 and model.defaults["top_k"] == 3
    image = (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8)
    for saliency in (model.msroi_map(image), model.aug_msroi_map(image, seed=0), model.rcam_map(image)):
        assert saliency.shape == (70, 90)


@pytest.mark.parametrize("key", ["file", "input.mean", "input.name", "outputs.logits", "cam.type", "classes.count",
                                 "cam.head_file"])
def test_missing_required_key_is_named_on_load(tmp_path, key):
    write_tiny_cam_files(tmp_path, seed=1)
    _write(tmp_path, "tiny.onnx", "tiny.head.npy")
    manifest = json.loads((tmp_path / "tiny.json").read_text())
    node = manifest
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    (tmp_path / "tiny.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"'{key}'"):
        read_manifest(tmp_path / "tiny.json")
    (tmp_path / "tiny.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_manifest(tmp_path / "tiny.json")
