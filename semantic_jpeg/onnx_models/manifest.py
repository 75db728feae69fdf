"""Manifest of a CAM model: the JSON file next to each ``.onnx`` that tells the runtime how to run it.

Written by :func:`write_manifest` (used by ``python -m semantic_jpeg.training.export`` and by anyone exporting
another network for :func:`semantic_jpeg.onnx_models.load_model`), read and checked by :func:`read_manifest`.
The contract is described in :mod:`semantic_jpeg.onnx_models`; the fields are:

``format`` (``"semantic_jpeg.cam_model/1"``), ``name``, ``version``, ``description``,
``file`` / ``sha256`` (the ONNX graph, relative to the manifest), ``input`` (name, layout NCHW, channel
order, ``mean``/``std`` applied to 0..255 pixel values, ``size_multiple``), ``noise_inputs`` (list of
``{"name", "channels", "stride"}``: additive activation noise, may be empty), ``outputs`` (``logits`` and
either ``features`` + ``feature_stride`` or ``class_maps``), ``cam`` (``{"type": "linear", "head_file",
"head_sha256"}`` or ``{"type": "class_maps"}``), ``classes`` (``count``, ``table`` file, ``table_sha256``,
``groupings`` available and ``default_grouping``), ``defaults`` (working_size, noise levels ...),
``source`` (package, version, weights file, licence) and ``producer`` (command, library versions).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

FORMAT = "semantic_jpeg.cam_model/1"
REQUIRED_FIELDS = ("format", "name", "version", "file", "sha256", "input", "noise_inputs", "outputs", "cam",
                   "classes", "defaults", "source")


class ModelIntegrityError(RuntimeError):
    """A model file does not match the sha256 recorded in its manifest."""


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(path: str | Path, *, name: str, version: str, onnx_file: str | Path, input_spec: dict,
                   outputs: dict, cam: dict, classes: dict, defaults: dict, source: dict,
                   noise_inputs: list | None = None, description: str = "", producer: dict | None = None) -> dict:
    """Write the manifest JSON for ``onnx_file`` at ``path`` and return it as a dict.

    File names inside (``onnx_file``, ``cam["head_file"]``, ``classes["table"]``) are stored relative to the
    manifest's folder and their sha256 are computed here, so call this after writing those files. Keys are
    sorted and the output ends with a newline, so the same inputs give the same bytes.
    """
    path = Path(path)
    folder = path.parent

    def relative(file):
        file = Path(file)
        file = file if file.is_absolute() else folder / file
        return file.resolve().relative_to(folder.resolve()).as_posix()

    cam = dict(cam)
    if cam.get("type") == "linear":
        cam["head_file"] = relative(cam["head_file"])
        cam["head_sha256"] = sha256_of(folder / cam["head_file"])
    elif cam.get("type") != "class_maps":
        raise ValueError(f"cam['type'] must be 'linear' or 'class_maps', got {cam.get('type')!r}")
    classes = dict(classes)
    if "table" in classes:
        classes["table"] = relative(classes["table"])
        classes["table_sha256"] = sha256_of(folder / classes["table"])
    onnx_rel = relative(onnx_file)
    manifest = {
        "format": FORMAT, "name": name, "version": version, "description": description,
        "file": onnx_rel, "sha256": sha256_of(folder / onnx_rel), "input": dict(input_spec),
        "noise_inputs": list(noise_inputs or []), "outputs": dict(outputs), "cam": cam, "classes": classes,
        "defaults": dict(defaults), "source": dict(source), "producer": dict(producer or {}),
    }
    _check_fields(manifest, path)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def read_manifest(path: str | Path, *, verify: bool = True) -> dict:
    """Read a manifest; with ``verify`` check the sha256 of every file it names (:class:`ModelIntegrityError`)."""
    path = Path(path)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    _check_fields(manifest, path)
    if verify:
        files = [(manifest["file"], manifest["sha256"])]
        if manifest["cam"]["type"] == "linear":
            files.append((manifest["cam"]["head_file"], manifest["cam"]["head_sha256"]))
        if "table" in manifest["classes"]:
            files.append((manifest["classes"]["table"], manifest["classes"]["table_sha256"]))
        for rel, expected in files:
            file = path.parent / rel
            if not file.is_file():
                raise FileNotFoundError(f"model file {file} named in manifest {path} is missing")
            actual = sha256_of(file)
            if actual != expected:
                raise ModelIntegrityError(f"{file} has sha256 {actual} but manifest {path} expects {expected}; "
                                          "the file was modified or corrupted, refusing to load it")
    return manifest


def _check_fields(manifest: dict, path: Path) -> None:
    missing = [key for key in REQUIRED_FIELDS if key not in manifest]
    if missing:
        raise ValueError(f"manifest {path} lacks fields {missing}")
    if manifest["format"] != FORMAT:
        raise ValueError(f"manifest {path} has format {manifest['format']!r}, expected {FORMAT!r}")
    outputs = manifest["outputs"]
    if "logits" not in outputs:
        raise ValueError(f"manifest {path}: outputs must name 'logits'")
    if manifest["cam"]["type"] == "linear" and not {"features", "feature_stride"} <= outputs.keys():
        raise ValueError(f"manifest {path}: a 'linear' CAM needs outputs 'features' and 'feature_stride'")
    if manifest["cam"]["type"] == "class_maps" and "class_maps" not in outputs:
        raise ValueError(f"manifest {path}: cam type 'class_maps' needs output 'class_maps'")
