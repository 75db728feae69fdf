"""onnxruntime runtime of the fixation-prediction model (no torch): where people look in an image.

The shipped ``efficientnet_lite0_gaze`` model (made by ``semantic-jpeg train gaze``, see docs/saliency.md) is a
DeepGaze II/IIE-style readout on frozen EfficientNet-Lite0 features at two input scales with a learned blur and
a learned log centre-bias prior. It outputs a probability distribution of fixations over the image:

    >>> from semantic_jpeg.onnx_models.gaze_model import default_gaze_model
    >>> model = default_gaze_model()
    >>> saliency = model.saliency_map(image)     # float32 (H, W) in [0, 1], peak 1, the image's size
    >>> log_p = model.log_density(image)         # float32 (H, W) natural-log probability per pixel, sums to 1

:func:`saliency_map` (also ``semantic_jpeg.saliency_map``) puts this model and the CAM maps of
:mod:`.cam_model` behind one function.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from semantic_jpeg.onnx_models.image_input import REDUCING_GAP, resize_map, to_rgb_array, working_shape
from semantic_jpeg.onnx_models.manifest import (
    ModelIntegrityError,
    check_input_spec,
    check_size_multiple,
    sha256_of,
)

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_GAZE_MODEL = "efficientnet_lite0_gaze"
FORMAT = "semantic_jpeg.gaze_model/1"
METHODS = ("gaze", "msroi", "aug-msroi", "rcam", "centre")
_REQUIRED = ("format", "name", "file", "sha256", "inputs", "input", "output", "centre_log_prior")


def network_pixels(rgb: np.ndarray, working_sizes, multiple: int = 32) -> list[np.ndarray]:
    """The full frame resized for each working size (longer side, sides multiples of ``multiple``, never cropped),
    float32 (h, w, 3) in 0..255, by Pillow's antialiased bilinear filter (float input is rounded to 8 bits first).
    A frame at least 4x larger than the largest working size is first box-reduced ONCE by the integer factor
    that keeps it >= 2x that size, and every size is resized from that (Pillow's ``reducing_gap=2`` does the same
    reduction, but separately for each size: sharing it saves one pass over a large frame per extra scale;
    smaller frames, such as the 800x600 training images, are resized directly). Training uses this same
    function (:mod:`semantic_jpeg.training.gaze_data`)."""
    if rgb.dtype != np.uint8:
        rgb = np.rint(np.asarray(rgb, np.float32) * 255.0).astype(np.uint8)
    height, width = rgb.shape[:2]
    shapes = [working_shape(height, width, size, multiple) for size in working_sizes]
    largest = max(shapes)
    factor = int(min(height / largest[0], width / largest[1]) // 2)
    # the same Pillow calls as image_input.resize_rgb, on one PIL image (no array round trips)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    if factor >= 2:
        image = image.reduce(factor)
    return [np.asarray(image if image.size == (w, h) else
                       image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP), np.float32)
            for h, w in shapes]


def read_gaze_manifest(path: str | Path, *, verify: bool = True) -> dict:
    """Read a gaze-model manifest; with ``verify`` check the ONNX file's sha256 (:class:`ModelIntegrityError`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gaze model manifest {path} not found")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise ValueError(f"gaze model manifest {path} lacks fields {missing}")
    if manifest["format"] != FORMAT:
        raise ValueError(f"manifest {path} has format {manifest['format']!r}, expected {FORMAT!r}")
    _check_gaze_fields(manifest, path)
    if verify:
        file = path.parent / manifest["file"]
        if not file.is_file():
            raise FileNotFoundError(f"model file {file} named in manifest {path} is missing")
        actual = sha256_of(file)
        if actual != manifest["sha256"]:
            raise ModelIntegrityError(f"{file} has sha256 {actual} but manifest {path} expects {manifest['sha256']};"
                                      " the file was modified or corrupted, refusing to load it")
    return manifest


def _check_gaze_fields(manifest: dict, path: Path) -> None:
    """The nested fields the runtime reads, checked on load (a ValueError naming the field, not a KeyError or a
    NaN map at the first call)."""
    def field(*keys):
        node = manifest
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise ValueError(f"gaze model manifest {path} lacks the field {'.'.join(keys[:depth + 1])!r}")
            node = node[key]
        return node

    for key in ("mean", "std"):
        field("input", key)
    check_input_spec({"size_multiple": 32, **manifest["input"]}, path)
    field("output", "name")
    inputs = manifest["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise ValueError(f"gaze model manifest {path}: 'inputs' must be a non-empty list of network inputs")
    for spec in inputs:
        if not isinstance(spec, dict) or "name" not in spec or "working_size" not in spec:
            raise ValueError(f"gaze model manifest {path}: each of 'inputs' needs 'name' and 'working_size'")
        check_size_multiple(spec.get("size_multiple", 32), path, "inputs.size_multiple")
        size = spec["working_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"gaze model manifest {path}: working_size must be a positive integer, got {size!r}")
    grid = np.asarray(field("centre_log_prior", "grid"), dtype=np.float64)
    if grid.ndim != 2 or grid.size == 0 or not (np.abs(grid) <= 1e4).all():  # also NaN: log-probabilities
        raise ValueError(f"gaze model manifest {path}: centre_log_prior.grid must be a non-empty 2-D grid of "
                         "log-probabilities (finite, within +-1e4)")


class GazeModel:
    """The fixation-prediction model run by onnxruntime. Thread-safe: one instance can serve many threads.

    ``manifest_path``: the model's JSON manifest (the ONNX file is next to it; its sha256 is checked first).
    """

    def __init__(self, manifest_path: str | Path = PACKAGE_DIR / f"{DEFAULT_GAZE_MODEL}.json", providers=None,
                 intra_op_num_threads: int | None = None):
        from semantic_jpeg.onnx_models.cam_model import check_graph_names, open_session

        self.manifest = manifest = read_gaze_manifest(manifest_path, verify=True)
        self.session, self.providers = open_session(Path(manifest_path).parent / manifest["file"], providers,
                                                    intra_op_num_threads, stacklevel=2)
        self.name = manifest["name"]
        self._inputs = [(spec["name"], int(spec["working_size"]), int(spec.get("size_multiple", 32)))
                        for spec in manifest["inputs"]]
        self._mean, self._std = float(manifest["input"]["mean"]), float(manifest["input"]["std"])
        self._output = manifest["output"]["name"]
        check_graph_names(self.session, [name for name, _, _ in self._inputs], [self._output], manifest_path)
        self.centre_log_prior = np.asarray(manifest["centre_log_prior"]["grid"], np.float32)
        self.saliency_map_blur = float(manifest.get("defaults", {}).get("saliency_map_blur", 0.03))

    def feeds(self, rgb: np.ndarray) -> dict:
        """The normalised network inputs (one per scale) of an RGB array (uint8 or float32 in [0, 1])."""
        sizes = [size for _, size, _ in self._inputs]
        pixels = network_pixels(rgb, sizes, self._inputs[0][2])
        return {name: np.ascontiguousarray(((p - self._mean) / self._std).transpose(2, 0, 1)[None], np.float32)
                for (name, _, _), p in zip(self._inputs, pixels)}

    def grid_log_density(self, image, *, color_order: str = "RGB") -> tuple[np.ndarray, tuple[int, int]]:
        """(log-probability per cell of the model's output grid (float64, sums to 1), the image's (H, W)).
        The grid spans the full frame (stride 4 of the first scale's network input)."""
        rgb = to_rgb_array(image, color_order)
        (out,) = self.session.run([self._output], self.feeds(rgb))
        return _renormalised(out[0]), rgb.shape[:2]

    def grid_log_densities(self, images, *, batch_size: int = 16, color_order: str = "RGB"):
        """:meth:`grid_log_density` of each of ``images`` (a sequence), in order, running images whose network
        inputs have the same shape (the same aspect ratio after rounding to 32 pixels) in batches of up to
        ``batch_size`` per onnxruntime call: what a GPU needs to be kept busy (docs/scaling.md). On the CPU the
        grids equal the one-at-a-time ones to float rounding."""
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        results: list = [None] * len(images)
        groups: dict = {}  # network input shapes -> [(index, feeds, (H, W))]
        for index, image in enumerate(images):
            rgb = to_rgb_array(image, color_order)
            feeds = self.feeds(rgb)
            key = tuple(feeds[name].shape for name, _, _ in self._inputs)
            group = groups.setdefault(key, [])
            group.append((index, feeds, rgb.shape[:2]))
            if len(group) == batch_size:  # run full batches as they fill: at most one batch of inputs held
                self._run_group(groups.pop(key), results)
        for group in groups.values():
            self._run_group(group, results)
        return results

    def _run_group(self, group, results):
        names = [name for name, _, _ in self._inputs]
        feeds = {name: np.concatenate([g[1][name] for g in group]) for name in names}
        (out,) = self.session.run([self._output], feeds)
        for (index, _, shape), grid in zip(group, out):
            results[index] = (_renormalised(grid), shape)

    def log_density(self, image, *, color_order: str = "RGB") -> np.ndarray:
        """Fixation density of the image as float32 (H, W) natural-log probabilities per pixel (the
        exponentials sum to 1): the grid's per-cell probabilities spread over their pixels, resized bilinearly
        and renormalised. For saliency evaluation (log-likelihood, information gain)."""
        grid, (height, width) = self.grid_log_density(image, color_order=color_order)
        density = resize_map(np.exp(grid).astype(np.float32), height, width).astype(np.float64)
        density = np.maximum(density, 1e-30)
        return np.log(density / density.sum()).astype(np.float32)

    def saliency_map(self, image, *, color_order: str = "RGB", blur: float | None = None) -> np.ndarray:
        """Where people look, float32 (H, W) in [0, 1] like the image (peak 1): the fixation density smoothed by
        a Gaussian of ``blur`` x the longer side (default: the manifest's ``saliency_map_blur``, 0.03), i.e. the
        expected fixation map of observers whose fixations are blurred that much, which is the map that
        maximises the expected correlation (CC) with such maps (Kümmerer, Wallis and Bethge, ECCV 2018).
        ``blur=0`` gives the density itself scaled to peak 1."""
        blur = self._check_blur(blur)
        grid, (height, width) = self.grid_log_density(image, color_order=color_order)
        return self._saliency_from_grid(grid, height, width, blur)

    def saliency_maps(self, images, *, batch_size: int = 16, color_order: str = "RGB",
                      blur: float | None = None) -> list[np.ndarray]:
        """:meth:`saliency_map` of each of ``images``, in order, with the network run on batches of same-shape
        inputs (:meth:`grid_log_densities`): the batched path for a GPU session (``providers=
        ["CUDAExecutionProvider"]``), e.g. one Ray actor making maps for many encoder actors
        (:class:`semantic_jpeg.ray.SaliencyMapper`)."""
        blur = self._check_blur(blur)
        return [self._saliency_from_grid(grid, height, width, blur)
                for grid, (height, width) in self.grid_log_densities(images, batch_size=batch_size,
                                                                     color_order=color_order)]

    def _check_blur(self, blur):
        blur = self.saliency_map_blur if blur is None else blur
        if isinstance(blur, bool) or not (isinstance(blur, (int, float, np.integer, np.floating))
                                          and np.isfinite(blur) and 0 <= blur <= 1):
            raise ValueError(f"blur must be a fraction of the longer side in [0, 1], got {blur!r}")
        return blur

    def _saliency_from_grid(self, grid, height, width, blur):
        density = np.exp(grid - grid.max())
        if blur > 0:
            density = gaussian_filter_nearest(density, blur * max(density.shape))
        peak_one = (density / density.max()).astype(np.float32)
        saliency = resize_map(peak_one, height, width)
        if not saliency.flags.writeable:  # shrinking returns Pillow's read-only buffer
            saliency = saliency.copy()
        return np.clip(saliency, 0.0, 1.0, out=saliency)  # in place: float rounding of the bilinear weights

    def centre_map(self, height: int, width: int) -> np.ndarray:
        """The model's learned centre-bias prior alone (no image content), float32 (height, width), peak 1."""
        prior = np.exp(self.centre_log_prior - self.centre_log_prior.max()).astype(np.float32)
        return np.clip(resize_map(prior, height, width), 0.0, 1.0)

    def __repr__(self) -> str:
        return f"GazeModel({self.name!r}, providers={self.providers})"


def gaussian_filter_nearest(array: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """``scipy.ndimage.gaussian_filter(array, sigma, mode="nearest", truncate=truncate)`` of a float64 array,
    bit for bit: the same kernel (radius int(truncate sigma + 0.5), normalised exp(-x^2 / 2 sigma^2)), the
    axes in order, and scipy's summation order for symmetric kernels (centre tap, then the pairs of taps from the
    outermost in). Written here because importing scipy.ndimage took 0.17 s of every process that makes the
    default map (each command, pool worker and Ray actor: a third of a worker's start-up), for a filter of a
    64x96 grid (0.26 ms here against scipy's 0.12 ms). tests/test_gaze.py compares it with scipy."""
    out = np.asarray(array, np.float64)
    sigma = float(sigma)
    radius = int(truncate * sigma + 0.5)
    taps = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * taps ** 2)
    phi = phi / phi.sum()
    for axis in range(out.ndim):
        n = out.shape[axis]
        padded = np.take(out, np.clip(np.arange(-radius, n + radius), 0, n - 1), axis=axis)  # "nearest" edges

        def shifted(k, padded=padded, axis=axis, n=n):
            index = [slice(None)] * padded.ndim
            index[axis] = slice(radius + k, radius + k + n)
            return padded[tuple(index)]

        acc = shifted(0) * phi[radius]
        for j in range(radius, 0, -1):
            acc += (shifted(j) + shifted(-j)) * phi[radius - j]
        out = acc
    return out


def _renormalised(out: np.ndarray) -> np.ndarray:
    """One output grid as float64 log-probabilities that sum to 1 (exact renormalisation in float64)."""
    grid = out.astype(np.float64)
    grid -= np.log(np.exp(grid - grid.max()).sum()) + grid.max()
    return grid


_lock = threading.Lock()
_default = None
_default_threads = None  # intra-op threads of the shared default model (None: onnxruntime's default)


def load_gaze_model(path: str | Path | None = None, providers=None, intra_op_num_threads=None) -> GazeModel:
    """Load the shipped gaze model (``path=None``) or one by the path of its manifest ``.json`` or ``.onnx``."""
    if path is None:
        path = PACKAGE_DIR / f"{DEFAULT_GAZE_MODEL}.json"
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or Path, got {type(path).__name__}")
    path = Path(path)
    return GazeModel(path.with_suffix(".json") if path.suffix == ".onnx" else path, providers=providers,
                     intra_op_num_threads=intra_op_num_threads)


def default_gaze_model() -> GazeModel:
    """The shared shipped gaze model, created once (thread-safe)."""
    global _default
    with _lock:
        if _default is None:
            _default = load_gaze_model(intra_op_num_threads=_default_threads)
        return _default


def set_default_gaze_model_threads(intra_op_num_threads: int | None) -> None:
    """Make the shared default gaze model run with this many onnxruntime intra-op threads (None: onnxruntime's
    default, all cores); it is (re)created at the next :func:`default_gaze_model` call. Batch workers call it
    with 1 so that N worker processes do not each start a thread pool as large as the machine."""
    global _default, _default_threads
    with _lock:
        if intra_op_num_threads != _default_threads:
            _default = None
        _default_threads = intra_op_num_threads


def saliency_map(image, method: str = "gaze", *, color_order: str = "RGB") -> np.ndarray:
    """Saliency map of an image: float32 (H, W) in [0, 1] at the image's size (any size and aspect ratio; the
    full frame is resized for the networks, never cropped or stretched in the output).

    ``method``:

    * ``"gaze"`` (default): where people look, the fixation-prediction model (:class:`GazeModel`);
    * ``"msroi"``, ``"aug-msroi"`` (seed 0), ``"rcam"``: class activation maps of the shipped EfficientNet-Lite0
      CAM model (:class:`~semantic_jpeg.onnx_models.cam_model.CamModel`; object regions, not fixations);
    * ``"centre"``: the gaze model's learned centre-bias prior alone (ignores the content).

    ``image``: PIL image or numpy uint8 / float in [0, 1], HxW or HxWx3 in ``color_order`` ("RGB"/"BGR").
    For the density itself (log-probability per pixel) use :func:`log_density`.
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"unknown saliency method {method!r}; valid methods: {', '.join(METHODS)}")
    if method == "gaze":
        return default_gaze_model().saliency_map(image, color_order=color_order)
    if method == "centre":
        rgb = to_rgb_array(image, color_order)
        return default_gaze_model().centre_map(*rgb.shape[:2])
    from semantic_jpeg.onnx_models.cam_model import default_model

    cam = default_model()
    if method == "msroi":
        return cam.msroi_map(image, color_order=color_order)
    if method == "aug-msroi":
        return cam.aug_msroi_map(image, color_order=color_order, seed=0)
    return cam.rcam_map(image, color_order=color_order)


def log_density(image, *, color_order: str = "RGB") -> np.ndarray:
    """The gaze model's fixation density: float32 (H, W) natural-log probability per pixel (exp sums to 1)."""
    return default_gaze_model().log_density(image, color_order=color_order)
