"""onnxruntime runtime of a CAM model: MS-ROI, Aug-MSROI and R-CAM maps and top-k predictions."""
from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path

import numpy as np

from semantic_jpeg.onnx_models.image_input import resize_map, resize_rgb, to_rgb_array, working_shape
from semantic_jpeg.onnx_models.manifest import read_manifest

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "efficientnet_lite0_cam"


def available_models() -> list[str]:
    """Names of the CAM models shipped in the package (each ``NAME.json`` CAM manifest here; the fixation model
    ``efficientnet_lite0_gaze`` has its own loader, :mod:`semantic_jpeg.onnx_models.gaze_model`)."""
    return sorted(path.stem for path in PACKAGE_DIR.glob("*.json")
                  if json.loads(path.read_text(encoding="utf-8")).get("format") != "semantic_jpeg.gaze_model/1")


def default_providers() -> list[str]:
    """CUDA then CPU when onnxruntime-gpu is installed (a GPU is checked at session creation), else CPU."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load_model(name_or_path: str | Path = DEFAULT_MODEL, providers=None, intra_op_num_threads=None) -> CamModel:
    """Load a shipped model by name (see :func:`available_models`) or any model by the path of its manifest
    ``.json`` or of its ``.onnx`` (manifest next to it, same stem). Every file's sha256 is checked against the
    manifest first (:class:`~semantic_jpeg.onnx_models.manifest.ModelIntegrityError` on mismatch)."""
    return CamModel(_manifest_path(name_or_path), providers=providers, intra_op_num_threads=intra_op_num_threads)


_default_lock = threading.Lock()
_default_instance = None
_default_threads = None  # intra-op threads of the default model (None: onnxruntime's default)


def default_model() -> CamModel:
    """The shared default shipped model, created once (thread-safe); its session is reusable across threads."""
    global _default_instance
    with _default_lock:
        if _default_instance is None:
            _default_instance = load_model(DEFAULT_MODEL, intra_op_num_threads=_default_threads)
        return _default_instance


def set_default_model_threads(intra_op_num_threads: int | None) -> None:
    """Make the shared default model run with this many onnxruntime intra-op threads (None: onnxruntime's
    default, all cores); it is (re)created at the next :func:`default_model` call. Batch workers call it with 1
    so that N worker processes do not each start a thread pool as large as the machine."""
    global _default_instance, _default_threads
    with _default_lock:
        if intra_op_num_threads != _default_threads:
            _default_instance = None
        _default_threads = intra_op_num_threads


def _manifest_path(name_or_path) -> Path:
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or Path, got {type(name_or_path).__name__}")
    text = str(name_or_path)
    if isinstance(name_or_path, str) and "/" not in text and "\\" not in text and not text.endswith(
            (".json", ".onnx")):
        if text not in available_models():
            raise ValueError(f"unknown model {text!r}; shipped models: {available_models()}")
        return PACKAGE_DIR / f"{text}.json"
    path = Path(name_or_path)
    if path.suffix == ".onnx":
        path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"model manifest {path} not found")
    return path


def read_class_table(path: Path) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Parse the class table TSV: wnids, names and one group label column per grouping."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    if header[:3] != ["index", "wnid", "name"] or any(int(row[0]) != i for i, row in enumerate(rows)):
        raise ValueError(f"{path}: expected columns index, wnid, name, ... with rows in index order")
    groupings = {column: [row[j] for row in rows] for j, column in enumerate(header) if j >= 3}
    return [row[1] for row in rows], [row[2] for row in rows], groupings


def _normalise(saliency: np.ndarray) -> np.ndarray:
    """Clip negatives to 0 and divide by the maximum (all-zero stays zero)."""
    saliency = np.maximum(saliency, 0.0)
    peak = float(saliency.max())
    return saliency / peak if peak > 0 else saliency


MAX_THREADS = 4096  # far above any machine's cores; onnxruntime's own limit is a 32-bit int


def check_graph_names(session, inputs, outputs, manifest_path) -> None:
    """The graph must take exactly the ``inputs`` its manifest declares and have its ``outputs`` (a ValueError on
    load, not onnxruntime's error at the first map call)."""
    graph_inputs = sorted(i.name for i in session.get_inputs())
    if graph_inputs != sorted(inputs):
        raise ValueError(f"manifest {manifest_path} declares the inputs {sorted(inputs)}, but the graph takes "
                         f"{graph_inputs}")
    graph_outputs = {o.name for o in session.get_outputs()}
    missing = [name for name in outputs if name not in graph_outputs]
    if missing:
        raise ValueError(f"manifest {manifest_path} names the outputs {missing}, which the graph does not have "
                         f"(it has {sorted(graph_outputs)})")


def open_session(onnx_path: Path, providers=None, intra_op_num_threads=None, *, stacklevel: int = 2):
    """An onnxruntime session for a shipped or user model: no spinning worker threads, ``intra_op_num_threads``
    checked, ``providers`` (default :func:`default_providers`) requested, and a RuntimeWarning (at the caller's
    ``stacklevel``) naming the providers onnxruntime did not enable. Returns (session, enabled providers)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Worker threads that spin after each run steal the cores from the numpy map post-processing that
    # follows every run (measured: 1080p MS-ROI map 36-42 ms with spinning, 22 ms without, 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if intra_op_num_threads is not None:
        if (isinstance(intra_op_num_threads, bool) or not isinstance(intra_op_num_threads, (int, np.integer))
                or not 0 <= intra_op_num_threads <= MAX_THREADS):
            raise ValueError(f"intra_op_num_threads must be an int in 0..{MAX_THREADS} (0: onnxruntime's "
                             f"default), got {intra_op_num_threads!r}")
        options.intra_op_num_threads = int(intra_op_num_threads)
    if isinstance(providers, str):  # one name, not a list of its characters
        providers = [providers]
    requested = list(providers) if providers is not None else default_providers()
    session = onnxruntime.InferenceSession(str(onnx_path), sess_options=options, providers=requested)
    enabled = session.get_providers()
    # a provider may be given as a name or as onnxruntime's (name, options) pair
    missing = [p for p in requested if (p[0] if isinstance(p, (tuple, list)) else p) not in enabled]
    if missing:
        warnings.warn(f"onnxruntime did not enable {missing}; running on {enabled}", RuntimeWarning,
                      stacklevel=stacklevel + 1)
    return session, enabled


class CamModel:
    """A CAM model run by onnxruntime. Thread-safe: one instance can serve many threads.

    Attributes: ``manifest`` (dict), ``providers`` (the session's real providers), ``class_names``,
    ``wnids``, ``groupings`` (names usable as ``grouping=``), ``defaults`` (from the manifest).
    """

    def __init__(self, manifest_path: Path, providers=None, intra_op_num_threads=None):
        self.manifest = manifest = read_manifest(manifest_path, verify=True)
        folder = Path(manifest_path).parent
        self.session, self.providers = open_session(folder / manifest["file"], providers, intra_op_num_threads,
                                                    stacklevel=3)
        self.name = manifest["name"]
        self.defaults = dict(manifest["defaults"])
        self._input = manifest["input"]
        self._mean, self._std = float(self._input["mean"]), float(self._input["std"])
        self._multiple = int(self._input.get("size_multiple", 32))
        # a graph whose TF "SAME" padding was folded into its convolutions is exact only on such sides
        self._required_multiple = self._multiple if self._input.get("size_multiple_required") else 1
        self._noise_inputs = manifest["noise_inputs"]
        outputs = manifest["outputs"]
        self._output_names = [outputs["logits"], outputs["class_maps"] if manifest["cam"]["type"] == "class_maps"
                              else outputs["features"]]
        check_graph_names(self.session, [self._input["name"]] + [n["name"] for n in self._noise_inputs],
                          self._output_names, manifest_path)
        if manifest["cam"]["type"] == "linear":
            head = np.load(folder / manifest["cam"]["head_file"])
            self._head_weight = np.ascontiguousarray(head[:, :-1], dtype=np.float32)
            self._head_bias = np.ascontiguousarray(head[:, -1], dtype=np.float32)
        n_classes = int(manifest["classes"]["count"])
        if "table" in manifest["classes"]:
            self.wnids, self.class_names, group_labels = read_class_table(folder / manifest["classes"]["table"])
        else:
            self.wnids, self.class_names, group_labels = [""] * n_classes, [str(i) for i in range(n_classes)], {}
        if len(self.class_names) != n_classes:
            raise ValueError(f"class table has {len(self.class_names)} rows, the model {n_classes} classes")
        self._group_index = {"fine": np.arange(n_classes)}
        for grouping, labels in group_labels.items():
            _, index = np.unique(np.asarray(labels), return_inverse=True)
            self._group_index[grouping] = index.reshape(-1)
        self.groupings = sorted(self._group_index)

    # -- low level -----------------------------------------------------------------------------------------
    def preprocess(self, image, *, color_order: str = "RGB", working_size: int | None = None,
                   square: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
        """Image -> (normalised (1, 3, h, w) float32 input, original (H, W)). The full frame is resized to
        the working shape (longer side ``working_size``, multiples of 32; ``square``: working_size x
        working_size), never cropped."""
        rgb = to_rgb_array(image, color_order)
        size = int(working_size if working_size is not None else self.defaults["working_size"])
        h, w = (size, size) if square else working_shape(rgb.shape[0], rgb.shape[1], size, self._multiple)
        pixels = resize_rgb(rgb, h, w)
        batch = ((pixels - self._mean) / self._std).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(batch, dtype=np.float32), rgb.shape[:2]

    def forward(self, batch: np.ndarray, noises: list[np.ndarray] | None = None):
        """Run the graph on a normalised (N, 3, h, w) float32 batch (h and w multiples of the manifest's
        ``size_multiple`` when it sets ``size_multiple_required``, as the shipped model's does). ``noises``: one
        array per manifest noise input, shapes (M, C, ceil(h/stride), ceil(w/stride)), default zeros; M = N, or
        any M when N = 1 (the graph broadcasts the one image's activations against the M noises, so the layers
        before the first noise point run once). Returns (logits (B, K), class evidence) with B = max(N, M):
        features (B, C, h', w') for a 'linear' CAM model or class maps (B, K, h', w')."""
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"batch must be float32 (N, 3, H, W), got {getattr(batch, 'dtype', type(batch))} "
                             f"{getattr(batch, 'shape', '')}")
        n, _, h, w = batch.shape
        if h % self._required_multiple or w % self._required_multiple:
            raise ValueError(f"{self.name} needs input sides that are multiples of {self._required_multiple} (its "
                             f"padding is folded into its convolutions), got {h}x{w}; preprocess() gives such sides")
        copies = len(noises[0]) if noises else n
        if n != 1 and copies != n:
            raise ValueError(f"noise batch {copies} does not match the image batch {n} (only a batch of 1 "
                             "broadcasts)")
        feeds = {self._input["name"]: batch}
        for position, spec in enumerate(self._noise_inputs):
            shape = (copies, int(spec["channels"]), -(-h // spec["stride"]), -(-w // spec["stride"]))
            noise = np.zeros(shape, np.float32) if noises is None else noises[position]
            if noise.shape != shape or noise.dtype != np.float32:
                raise ValueError(f"noise input {spec['name']} must be float32 {shape}, got {noise.dtype} {noise.shape}")
            feeds[spec["name"]] = noise
        logits, evidence = self.session.run(self._output_names, feeds)
        return logits, evidence

    def class_activation_maps(self, logits: np.ndarray, evidence: np.ndarray, mixtures: np.ndarray) -> np.ndarray:
        """Maps of class mixtures (Prakash et al., CVPR 2018; thesis eq. 4.4): for one image, ``mixtures`` (M, K) rows
        of class weights -> (M, h', w') maps sum_c mixture[c] * CAM_c."""
        # Only the classes a mixture uses are read, and the products go through einsum's own loops: these
        # matrices are small, and BLAS would wake its thread pool, whose spinning threads take the CPU from
        # onnxruntime and from the encoder on small machines.
        used = np.flatnonzero(mixtures.any(axis=0))
        mixtures = np.ascontiguousarray(mixtures[:, used])
        if self.manifest["cam"]["type"] == "linear":
            weight = np.einsum("mk,kc->mc", mixtures, self._head_weight[used])      # (M, C)
            bias = np.einsum("mk,k->m", mixtures, self._head_bias[used])             # (M,)
            return np.einsum("mc,chw->mhw", weight, evidence) + bias[:, None, None]
        return np.einsum("mk,khw->mhw", mixtures, evidence[used])

    # -- maps ----------------------------------------------------------------------------------------------
    def msroi_from_outputs(self, logits, evidence, grouping, k, threshold=None) -> np.ndarray:
        """MS-ROI at feature resolution from one image's :meth:`forward` outputs (Prakash et al., DCC 2017; thesis eq.
        2.4-2.5 over coarse classes), see :meth:`msroi_map`."""
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        group = self._group_index[grouping]
        group_probs = np.bincount(group, weights=probs)
        order = np.argsort(-group_probs, kind="stable")[:k]
        if threshold is not None:
            order = order[:max(1, int((group_probs[order] >= threshold).sum()))]
        # coarse class CAM = probability-weighted mean of its members' CAMs
        mixtures = np.where(group[None, :] == order[:, None], probs[None, :], 0.0)
        mixtures /= group_probs[order][:, None]
        maps = self.class_activation_maps(logits, evidence, mixtures.astype(np.float32))
        rank_weights = np.arange(len(order), 0, -1, dtype=np.float32)  # top class k, then k-1, ... 1
        combined = sum(w * _normalise(m) for w, m in zip(rank_weights / rank_weights.sum(), maps))
        return _normalise(combined)

    def _check_options(self, grouping, k, threshold):
        if grouping not in self._group_index:
            raise ValueError(f"unknown grouping {grouping!r}; available: {self.groupings}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability in [0, 1], got {threshold!r}")

    def msroi_map(self, image, *, color_order: str = "RGB", working_size: int | None = None,
                  grouping: str | None = None, k: int | None = None, threshold: float | None = None) -> np.ndarray:
        """MS-ROI map (Prakash et al., DCC 2017; thesis sec. 2.3): CAMs of the top-``k`` coarse classes (``grouping``;
        optionally only those with coarse probability >= ``threshold``, eq. 2.5), each clipped at 0 and scaled to max 1,
        summed with rank weights k, k-1, ..., 1 and scaled to [0, 1]. float32 (H, W) like the image."""
        grouping = grouping or self.defaults["grouping"]
        k = self.defaults["top_k"] if k is None else k
        self._check_options(grouping, k, threshold)
        batch, (height, width) = self.preprocess(image, color_order=color_order, working_size=working_size)
        logits, evidence = self.forward(batch)
        return resize_map(self.msroi_from_outputs(logits[0], evidence[0], grouping, k, threshold), height, width)

    def aug_msroi_batch(self, batch: np.ndarray, n: int, rng: np.random.Generator, input_noise: float,
                        activation_noise: float):
        """:meth:`forward` of ``n`` perturbed copies of a (1, 3, h, w) batch (Prakash et al., DCC 2018; thesis sec.
        3.6): one input perturbation, shared by the copies, and ``n`` draws of every activation noise in one batch, so
        the layers before the first noise point run once. A model without noise inputs gets ``n`` input draws."""
        _, _, h, w = batch.shape
        input_copies = 1 if self._noise_inputs else n
        batch = batch + rng.standard_normal((input_copies, 3, h, w), dtype=np.float32) * np.float32(input_noise)
        noises = [rng.standard_normal((n, int(spec["channels"]), -(-h // spec["stride"]), -(-w // spec["stride"])),
                                      dtype=np.float32) * np.float32(activation_noise)
                  for spec in self._noise_inputs]
        return self.forward(batch, noises)

    def aug_msroi_map(self, image, *, n: int | None = None, seed=None, color_order: str = "RGB",
                      working_size: int | None = None, grouping: str | None = None, k: int | None = None,
                      threshold: float | None = None, input_noise: float | None = None,
                      activation_noise: float | None = None) -> np.ndarray:
        """Aug-MSROI map (Prakash et al., DCC 2018; thesis sec. 3.6): mean of the MS-ROI maps of ``n`` perturbed copies
        run in ONE batch, scaled to [0, 1]. The normalised input gets Gaussian noise of std ``input_noise``, drawn once
        and shared by the copies; each copy gets its own Gaussian noise on the intermediate activations named
        by the manifest (std ``activation_noise`` x each channel's std). Sharing the input perturbation lets
        the layers before the first noise point run once (n=5 on 2 CPU cores: 2.2x one MS-ROI map instead of
        3.8x; map quality against human fixations unchanged, see README). Noise from
        ``numpy.random.default_rng(seed)``: same seed, same map."""
        grouping = grouping or self.defaults["grouping"]
        k = self.defaults["top_k"] if k is None else k
        n = self.defaults["aug_n"] if n is None else n
        input_noise = self.defaults["input_noise"] if input_noise is None else input_noise
        activation_noise = self.defaults["activation_noise"] if activation_noise is None else activation_noise
        self._check_options(grouping, k, threshold)
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        if not (np.isfinite(input_noise) and input_noise >= 0 and np.isfinite(activation_noise)
                and activation_noise >= 0):
            raise ValueError(f"noise levels must be finite and >= 0, got {input_noise!r}, {activation_noise!r}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        batch, (height, width) = self.preprocess(image, color_order=color_order, working_size=working_size)
        logits, evidence = self.aug_msroi_batch(batch, n, rng, input_noise, activation_noise)
        maps = [self.msroi_from_outputs(logits[i], evidence[i], grouping, k, threshold) for i in range(n)]
        return resize_map(_normalise(np.mean(maps, axis=0)), height, width)

    def rcam_map(self, image, *, k: int | None = None, color_order: str = "RGB",
                 working_size: int | None = None) -> np.ndarray:
        """Robust activation map R-CAM (Prakash et al., CVPR 2018; thesis eq. 4.5): sum_i CAM_{c_i} / 2^i over the
        top-``k`` fine classes (i = 1..k), clipped at 0 and divided by its maximum. float32 (H, W) in [0, 1]."""
        k = self.defaults["top_k"] if k is None else k
        self._check_options("fine", k, None)
        batch, (height, width) = self.preprocess(image, color_order=color_order, working_size=working_size)
        logits, evidence = self.forward(batch)
        return resize_map(self.rcam_from_outputs(logits[0], evidence[0], k), height, width)

    def rcam_from_outputs(self, logits, evidence, k) -> np.ndarray:
        """R-CAM at feature resolution from one image's :meth:`forward` outputs, see :meth:`rcam_map`."""
        top = np.argsort(-logits, kind="stable")[:k]
        mixture = np.zeros((1, logits.shape[0]), np.float32)
        mixture[0, top] = 0.5 ** np.arange(1, len(top) + 1)
        return _normalise(self.class_activation_maps(logits, evidence, mixture)[0])

    def predict_topk(self, image, k: int = 5, *, color_order: str = "RGB") -> list[tuple[int, str, float]]:
        """Top-``k`` ImageNet classes as (index, name, softmax probability); the full frame is resized to
        ``defaults['classify_size']`` squared (no crop)."""
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= len(self.class_names):
            raise ValueError(f"k must be an int in [1, {len(self.class_names)}], got {k!r}")
        batch, _ = self.preprocess(image, color_order=color_order, working_size=self.defaults["classify_size"],
                                   square=True)
        logits = self.forward(batch)[0][0].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs, kind="stable")[:k]
        return [(int(c), self.class_names[c], float(probs[c])) for c in top]

    def __repr__(self) -> str:
        return f"CamModel({self.name!r}, providers={self.providers})"
