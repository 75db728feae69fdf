"""Manifest of a CAM model: the JSON file next to each ``.onnx`` that tells the runtime how to run it.

Written by :func:`write_manifest` (used by ``python -m semantic_jpeg.training.export`` and by anyone exporting
another network for :func:`semantic_jpeg.onnx_models.load_model`), read and checked by :func:`read_manifest`.
The contract is described in :mod:`semantic_jpeg.onnx_models`; the fields are:

``format`` (``"semantic_jpeg.cam_model/1"``), ``name``, ``version``, ``description``,
``file`` / ``sha256`` (the ONNX graph, relative to the manifest), ``input`` (name, layout NCHW, channel
order, ``mean``/``std`` applied to 0..255 pixel values, ``size_multiple``; ``size_multiple_required``: true when
the graph is exact only on such sides, e.g. with folded padding), ``noise_inputs`` (list of
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
from typing import Any

FORMAT = "semantic_jpeg.cam_model/1"
REQUIRED_FIELDS = ("format", "name", "version", "file", "sha256", "input", "noise_inputs", "outputs", "cam",
                   "classes", "defaults", "source")
# Keys a manifest read from disk must have (dotted: nested). The others are optional and filled in by
# read_manifest from OPTIONAL_DEFAULTS, so a hand-written manifest fails on load, naming the key, not at the
# first map call.
REQUIRED_KEYS = ("format", "name", "file", "sha256", "input", "input.name", "input.mean", "input.std", "outputs",
                 "outputs.logits", "cam", "cam.type", "classes", "classes.count")
OPTIONAL_DEFAULTS = {"version": "0", "description": "", "noise_inputs": [], "source": {}, "producer": {}}
INPUT_DEFAULTS = {"layout": "NCHW", "channels": "RGB", "dtype": "float32", "size_multiple": 32}
SETTING_DEFAULTS: dict[str, Any] = {"working_size": 224, "grouping": "fine", "top_k": 5, "aug_n": 5,
                                     "input_noise": 0.05, "activation_noise": 0.3, "classify_size": 224}


CAM_TYPES = ("linear", "class_maps")


def check_input_spec(spec: dict, path) -> None:
    """The pixel normalisation and size rules of a manifest's ``input`` (CAM and gaze models): ``mean`` a finite
    number, ``std`` a finite number > 0 (else every map is NaN), ``size_multiple`` a positive integer."""
    import math

    for key in ("mean", "std"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"manifest {path}: input.{key} must be a finite number, got {value!r}")
    if spec["std"] <= 0:
        raise ValueError(f"manifest {path}: input.std must be > 0, got {spec['std']!r}")
    check_size_multiple(spec.get("size_multiple", 32), path, "input.size_multiple")


def check_size_multiple(multiple, path, field: str) -> None:
    """A manifest's size multiple (the network's input sides are multiples of it) must be a positive integer."""
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"manifest {path}: {field} must be a positive integer, got {multiple!r}")


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
        # a relative name is taken in the manifest's folder when it is there ("model.onnx"), else as a path
        # from the working directory ("runs/msroi/model.onnx" with the manifest in runs/msroi)
        file = Path(file)
        if not file.is_absolute() and ((folder / file).exists() or not file.exists()):
            file = folder / file
        if not file.is_file():
            raise FileNotFoundError(f"{file} does not exist: write the model files before their manifest")
        try:
            return file.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            raise ValueError(f"{file} is not inside the manifest's folder {folder}: the manifest names its files "
                             "relative to its folder, so put them there") from None

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
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"manifest {path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"manifest {path} must hold a JSON object")
    manifest = _with_defaults(manifest, path)
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


def _with_defaults(manifest: dict, path: Path) -> dict:
    """The manifest with its required keys checked (ValueError naming the first missing one) and the optional
    ones filled in."""
    for key in REQUIRED_KEYS:
        node = manifest
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"manifest {path} lacks the required key {key!r}")
            node = node[part]
    manifest = {**OPTIONAL_DEFAULTS, **manifest}
    manifest["input"] = {**INPUT_DEFAULTS, **manifest["input"]}
    defaults = manifest.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ValueError(f"manifest {path}: 'defaults' must be an object")
    settings = {**SETTING_DEFAULTS,
                "top_k": min(SETTING_DEFAULTS["top_k"], int(manifest["classes"]["count"]))}
    manifest["defaults"] = {**settings, **defaults}
    if manifest["cam"]["type"] == "linear":
        for key in ("head_file", "head_sha256"):
            if key not in manifest["cam"]:
                raise ValueError(f"manifest {path} lacks the required key 'cam.{key}' (a 'linear' CAM)")
    if "table" in manifest["classes"] and "table_sha256" not in manifest["classes"]:
        raise ValueError(f"manifest {path} lacks the required key 'classes.table_sha256' (it names a table)")
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
    if manifest["cam"]["type"] not in CAM_TYPES:
        raise ValueError(f"manifest {path}: cam.type must be one of {list(CAM_TYPES)}, got {manifest['cam']['type']!r}")
    check_input_spec(manifest["input"], path)
    count = manifest["classes"]["count"]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"manifest {path}: classes.count must be a positive integer, got {count!r}")
    if manifest["cam"]["type"] == "linear" and not {"features", "feature_stride"} <= outputs.keys():
        raise ValueError(f"manifest {path}: a 'linear' CAM needs outputs 'features' and 'feature_stride'")
    if manifest["cam"]["type"] == "class_maps" and "class_maps" not in outputs:
        raise ValueError(f"manifest {path}: cam type 'class_maps' needs output 'class_maps'")
