"""Ray Data integration: semantic JPEG encoding and purification as ``Dataset.map_batches`` callables.

Install with ``pip install "semantic_jpeg[ray]"``. Both classes are *callable classes*: Ray Data creates one
instance per actor, so the saliency model is loaded once per worker, then each call handles a batch::

    import ray
    from semantic_jpeg.ray import SemanticJpegEncoder

    ds = ray.data.read_images("photos/", mode="RGB", include_paths=True, override_num_blocks=8)
    ds = ds.map_batches(SemanticJpegEncoder, fn_constructor_kwargs={"quality": 80},
                        compute=ray.data.ActorPoolStrategy(size=4), batch_size=8)
    for row in ds.iter_rows():          # or root=/out= to write the files: see docs/scaling.md
        ...                             # row["jpeg"] (bytes), row["jpeg_size"], row["final_quality"], row["path"]

The same code runs on a Ray cluster (``ray up`` / KubeRay): Ray Data schedules the actors; nothing here
depends on the cluster's size. On one machine with as many CPUs as encoder actors, ask for fractional
CPUs (``num_cpus=0.5`` for the actors, ``num_cpus=0.25`` for ``read_images`` and the write step) so that every
actor and the read tasks can run at once (see docs/scaling.md).

Input images are HxWx3 uint8 RGB arrays (what ``read_images(mode="RGB")`` produces); the JPEG bytes equal those
of :func:`semantic_jpeg.encode` on the same array with the same options. Metadata of the original files
(EXIF, ICC) is not carried by ``read_images`` and so not written.
"""
from __future__ import annotations

import hashlib

import numpy as np

try:
    import ray  # noqa: F401 -- the extra must be installed for this module to be useful
except ImportError as exc:  # pragma: no cover -- exercised when ray is missing
    raise ImportError('semantic_jpeg.ray needs Ray Data: pip install "semantic_jpeg[ray]"') from exc

__all__ = ["SemanticJpegEncoder", "SaliencyMapper", "PurifyTransform", "row_seed", "write_jpegs"]


def _rows(column):
    """The images of a batch column: a 4-D array (same-size images), N x H x W (greyscale), or a 1-D object array
    of HxW / HxWxC arrays. A greyscale row stored as 1 x H x W (Ray does this when a block mixes greyscale and
    colour images) is read as H x W."""
    if isinstance(column, np.ndarray) and column.dtype != object:
        if column.ndim == 3 and column.shape[-1] in (3, 4):
            raise ValueError(f"image column of shape {column.shape} looks like ONE HxWx{column.shape[-1]} image; a "
                             "batch column holds N images (N x H x W x 3, or N x H x W greyscale)")
        if column.ndim == 3:  # one greyscale batch N x H x W
            return list(column)
        if column.ndim != 4:
            raise ValueError(f"image column must hold HxWx3 images, got an array of shape {column.shape}")
        return list(column)
    rows = [np.asarray(row) for row in column]
    return [row[0] if row.ndim == 3 and row.shape[0] == 1 and row.shape[-1] not in (1, 3, 4) else row for row in rows]


def _same_length(batch: dict, names) -> None:
    """Columns of one batch must have one value per row (zip would silently drop rows)."""
    lengths = {name: len(batch[name]) for name in names if name in batch}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"the columns of one batch must have the same number of rows, got {lengths}")


def _column(batch: dict, name: str, hint: str):
    """``batch[name]``, or a KeyError naming the missing column, the columns there are, and ``hint``."""
    if type(batch).__module__.split(".")[0] == "pyarrow":
        raise TypeError("pyarrow batches are not supported: use map_batches(..., batch_format='numpy') (the default) "
                        "or 'pandas'")
    if name not in batch:
        raise KeyError(f"batch has no column {name!r} (columns: {sorted(batch)}); {hint}")
    return batch[name]


def _object_column(values: list) -> np.ndarray:
    """A 1-D object array of ``values`` (arrays of different shapes, bytes), as a Ray Data batch column."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


class SemanticJpegEncoder:
    """``Dataset.map_batches`` callable: encodes the ``image`` column and adds ``jpeg`` (bytes) and summary
    columns ``jpeg_size`` (bytes), ``final_quality`` and ``width`` / ``height``.

    image_column, jpeg_column: column names. keep_image: also return the decoded image column (default: dropped,
    it is the largest column). intra_op_num_threads: onnxruntime threads of the saliency model per actor (1 by
    default: give an actor more CPUs only together with more threads). errors: "raise" (default: the task fails,
    Ray retries it only when asked to, with ``max_retries`` and ``retry_exceptions``) or "record" (a failed row,
    its encode or its write, gets an empty ``jpeg`` / ``output`` and its message in ``error``).
    out, root: write each JPEG in the actor instead of returning it: under ``out``, at the row's path (column
    ``path_column``, as ``read_images(include_paths=True)`` adds) relative to ``root``, as :func:`write_jpegs`
    writes (atomically, never replacing a file unless ``overwrite``; ``skip_existing`` resumes a run, leaving the
    rows whose file exists alone, without encoding them); the ``jpeg`` column is then replaced by ``output`` (the
    path written). One step instead of a separate write step: fewer tasks, and the bytes never
    travel through Ray's object store (speeds of both layouts on two CPUs: docs/scaling.md).
    saliency_column: a column of maps made upstream (:class:`SaliencyMapper`, e.g. batched on a GPU); each row's
    map is passed as ``saliency=`` and the actor loads no model. The column is dropped from the output.
    encode_options: keyword arguments of :func:`semantic_jpeg.encode` (not ``fp`` / ``return_result``).
    """

    def __init__(self, *, image_column: str = "image", jpeg_column: str = "jpeg", keep_image: bool = False,
                 intra_op_num_threads: int | None = 1, errors: str = "raise", out: str | None = None,
                 root: str | None = None, path_column: str = "path", overwrite: bool = False,
                 skip_existing: bool = False, saliency_column: str | None = None, **encode_options):
        from .codec.encoder import encode

        for key in ("fp", "return_result"):
            if key in encode_options:
                raise TypeError(f"SemanticJpegEncoder does not take {key!r}")
        if saliency_column is not None and encode_options.get("saliency") is not None:
            raise ValueError("give saliency= or saliency_column=, not both")
        self.saliency_column = saliency_column
        if errors not in ("raise", "record"):
            raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
        if (out is None) != (root is None):
            raise ValueError("give both out= (the output folder) and root= (the folder the input paths are "
                             "relative to), or neither")
        if overwrite and skip_existing:
            raise ValueError("give overwrite=True or skip_existing=True, not both")
        self.write_to = None if out is None else dict(root=root, out=out, path_column=path_column,
                                                      jpeg_column=jpeg_column, overwrite=overwrite,
                                                      skip_existing=skip_existing, errors=errors)
        self.image_column, self.jpeg_column = image_column, jpeg_column
        self.keep_image, self.errors = keep_image, errors
        self.options = encode_options
        self._encode = encode
        if encode_options.get("saliency") is None and saliency_column is None:  # the default map's model, once
            from .codec.batch import pin_default_models
            pin_default_models(intra_op_num_threads)
            from .onnx_models.gaze_model import saliency_map

            saliency_map(np.zeros((32, 32, 3), np.uint8))  # load the model here, once, not in the first batch

    def __call__(self, batch: dict) -> dict:
        images = _rows(_column(batch, self.image_column, "pass image_column="))
        if self.saliency_column is not None:
            maps = list(_column(batch, self.saliency_column,
                                "map the images with SaliencyMapper first, or pass saliency_column=None"))
        else:
            maps = [self.options.get("saliency")] * len(images)
        columns = [self.image_column, self.saliency_column]  # None (no saliency column) is not in the batch
        if self.write_to is not None:
            paths = _column(batch, self.write_to["path_column"], "read the images with include_paths=True")
            columns.append(self.write_to["path_column"])
        _same_length(batch, columns)
        keep = [True] * len(images)
        if self.write_to is not None:
            import os
            if self.write_to["skip_existing"]:  # resuming: no encode for a row whose file exists
                keep = [not os.path.lexists(target) for _, target in _targets(paths, self.write_to["root"],
                                                                                self.write_to["out"])]
        options = {k: v for k, v in self.options.items() if k != "saliency"}
        rows = []  # (jpeg, size, final quality, width, height, error) per row
        for image, saliency, wanted in zip(images, maps, keep):
            if not wanted:  # its file exists and skip_existing keeps it
                rows.append((b"", 0, np.nan, 0, 0, ""))
                continue
            try:
                result = self._encode(np.asarray(image), saliency=saliency, return_result=True, **options)
            except Exception as exc:  # noqa: BLE001
                if self.errors == "raise":
                    raise
                rows.append((b"", 0, np.nan, 0, 0, f"{type(exc).__name__}: {exc}"))
                continue
            rows.append((result.data, result.size, result.final_quality, result.width, result.height, ""))
        jpegs, sizes, qualities, widths, heights, errors = (list(c) for c in zip(*rows)) if rows else ([],) * 6
        out = {k: v for k, v in batch.items()
               if (self.keep_image or k != self.image_column) and k != self.saliency_column}
        out[self.jpeg_column] = _object_column(jpegs)
        out["jpeg_size"] = np.asarray(sizes, dtype=np.int64)
        out["final_quality"] = np.asarray(qualities, dtype=np.float64)
        out["width"] = np.asarray(widths, dtype=np.int64)
        out["height"] = np.asarray(heights, dtype=np.int64)
        if self.errors == "record":
            out["error"] = np.asarray(errors, dtype=object)
        if self.write_to is not None:
            return write_jpegs(out, **self.write_to)
        return out


class SaliencyMapper:
    """``Dataset.map_batches`` callable: adds a ``saliency`` column (float32 HxW maps in [0, 1], the default map
    of :func:`semantic_jpeg.saliency_map`) to a batch of ``image`` rows, running the gaze model on batches of
    same-shape images (:meth:`GazeModel.saliency_maps`). Made for a GPU: one actor with ``num_gpus=1`` makes the
    maps while CPU actors (``SemanticJpegEncoder(saliency_column="saliency")``) encode::

        ds = ds.map_batches(SaliencyMapper, num_gpus=1, batch_size=64,
                            compute=ray.data.ActorPoolStrategy(size=1))
        ds = ds.map_batches(SemanticJpegEncoder, fn_constructor_kwargs={"saliency_column": "saliency"},
                            compute=ray.data.ActorPoolStrategy(size=n_cpus), batch_size=8)

    providers: onnxruntime providers (default: CUDA when onnxruntime-gpu sees a GPU, else CPU; the session's
    real providers are in ``.providers``; a requested provider onnxruntime cannot enable is warned about).
    model_batch_size: images per onnxruntime call. intra_op_num_threads: CPU threads of the session (None:
    onnxruntime's default). On the CPU the maps equal :func:`semantic_jpeg.saliency_map`'s to float rounding
    (tested to 1e-6; the same bits where we ran it; with ``model_batch_size=1`` each image runs alone, as there);
    on a GPU they differ by float rounding, so the encoded bytes may differ from a CPU-only run's.
    """

    def __init__(self, *, image_column: str = "image", saliency_column: str = "saliency", providers=None,
                 model_batch_size: int = 16, intra_op_num_threads: int | None = None):
        from .onnx_models.gaze_model import load_gaze_model

        self.image_column, self.saliency_column = image_column, saliency_column
        self.model = load_gaze_model(providers=providers, intra_op_num_threads=intra_op_num_threads)
        self.providers = self.model.providers
        self.model_batch_size = model_batch_size
        self.model.saliency_maps([np.zeros((32, 32, 3), np.uint8)], batch_size=model_batch_size)  # checked, warm

    def __call__(self, batch: dict) -> dict:
        images = [np.asarray(image) for image in _rows(_column(batch, self.image_column, "pass image_column="))]
        out = dict(batch)
        out[self.saliency_column] = _object_column(self.model.saliency_maps(images, batch_size=self.model_batch_size))
        return out


def _is_int(value) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_seed(seed) -> None:
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def row_seed(seed: int, key) -> np.random.Generator:
    """The generator of one row: from the base ``seed`` (an integer >= 0) and the row's key (an int, or any value
    whose ``str`` identifies the row, e.g. its path), so a row's draw does not depend on how rows are batched.
    Distinct non-negative int keys give distinct streams; a negative int key is hashed like a string."""
    _check_seed(seed)
    if _is_int(key) and key >= 0:
        return np.random.default_rng([int(seed), int(key)])
    text = f"int:{int(key)}" if _is_int(key) else str(key)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


class PurifyTransform:
    """``Dataset.map_batches`` callable for inference pipelines: applies a purification filter (a preset name
    such as ``"pd+rcam+dwt"``, or any filter callable ``f(image, rng=..., **overrides)``) to the ``image``
    column of RGB images.

    Each row draws its randomness from ``row_seed(seed, row[key_column])``, so the output of a row is the same
    however the dataset is split into batches or blocks. ``key_column``: a column identifying rows (default
    ``"path"``, as ``read_images(include_paths=True)`` adds; an integer column works too).
    output_column: where the purified image goes (default: replaces ``image``). overrides: keyword arguments of
    the filter (a keyword it does not take is a TypeError); ``color_order="BGR"`` among them for BGR images.
    """

    def __init__(self, filter="pd+rcam+dwt", *, seed: int = 0, key_column: str = "path", image_column: str = "image",
                 output_column: str | None = None, intra_op_num_threads: int | None = 1, **overrides):
        from .defense_filters import preset
        from .defense_filters.compose import accepted_keywords, check_keywords

        self.filter = preset(filter) if isinstance(filter, str) else filter
        if not callable(self.filter):
            raise TypeError(f"filter must be a preset name or a callable, got {type(filter).__name__}")
        _check_seed(seed)  # now, not at the first batch
        self.seed, self.key_column, self.image_column = int(seed), key_column, image_column
        self.output_column = output_column or image_column
        check_keywords(self.filter, overrides, repr(self.filter))  # a misspelt keyword must not be ignored
        # images come as RGB (read_images); color_order="BGR" in overrides says otherwise. A filter that takes
        # no color_order (a plain function) gets none.
        accepted = accepted_keywords(self.filter)
        self.overrides = ({"color_order": "RGB", **overrides} if accepted is None or "color_order" in accepted
                          else dict(overrides))
        try:
            from .codec.batch import pin_default_models
            pin_default_models(intra_op_num_threads)
        except ImportError:  # filters without a saliency model need no onnxruntime
            pass

    def __call__(self, batch: dict) -> dict:
        hint = "read the images with include_paths=True or pass key_column= / image_column="
        images, keys = (_column(batch, c, hint) for c in (self.image_column, self.key_column))
        _same_length(batch, (self.image_column, self.key_column))
        images, keys = _rows(images), list(keys)
        purified = [self.filter(np.asarray(image), rng=row_seed(self.seed, key), **self.overrides)
                    for image, key in zip(images, keys)]
        out = dict(batch)
        if len({p.shape for p in purified}) == 1 and purified:
            out[self.output_column] = np.stack(purified)
        else:
            out[self.output_column] = _object_column(purified)
        return out


def _targets(paths, root: str, out: str) -> list[tuple[str, str]]:
    """(input's real path, output path) of each row: the path relative to ``root`` under ``out``, as ``.jpg``.
    ValueError for a path outside ``root``, two rows of the batch with one output, and an existing output under
    ``root`` (it may be an input)."""
    import os

    root_dir = os.path.realpath(root)
    targets, seen = [], {}
    for path in paths:
        source = os.path.realpath(str(path))
        rel = os.path.relpath(source, root_dir)
        if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
            raise ValueError(f"{path} is not under root {root}")
        target = os.path.join(out, os.path.splitext(rel)[0] + ".jpg")
        key = os.path.realpath(target)
        if key == source or (os.path.exists(key) and os.path.commonpath([key, root_dir]) == root_dir):
            raise ValueError(f"{target} exists under root {root}, so it may be an input of this dataset: "
                             "refusing to write over it; choose an out= outside root")
        if key in seen:
            raise ValueError(f"{seen[key]} and {path} would both be written to {target}")
        seen[key] = path
        targets.append((source, target))
    return targets


def write_jpegs(batch: dict, *, root: str, out: str, path_column: str = "path", jpeg_column: str = "jpeg",
                overwrite: bool = False, skip_existing: bool = False, errors: str = "raise") -> dict:
    """``Dataset.map_batches`` function that writes each row's JPEG to ``out`` under the row's path relative to
    ``root`` (sub-folders kept, extension ``.jpg``; relative paths are relative to the working folder), atomically.
    Returns the batch without the ``jpeg`` column, plus ``output`` (the path written; "" for a row without JPEG
    bytes, one that failed with ``errors="record"``).

    An existing output is replaced only with ``overwrite``, and kept with ``skip_existing`` (to resume a run: its
    ``output`` is still given); otherwise a batch with one is refused before any of its files is written. An input
    is never replaced, even with ``overwrite``: an existing file under ``root`` is refused (ValueError; it may be
    an input, e.g. ``a.jpg`` beside ``a.png`` when ``out`` is ``root``). Two rows of one batch that map to one file
    (``a.png`` and ``a.jpg``) are a ValueError. Rows of different batches are written by different tasks: there a
    second file of the same name is a FileExistsError without ``overwrite``, and replaces the first with it.
    ``errors="record"``: a row whose write fails gets ``output`` "" and its message in ``error`` (the batch goes on).
    On a cluster, ``out`` must be storage every node can write (a shared file system)."""
    import os

    from ._cliutil import describe_error, write_file

    if overwrite and skip_existing:
        raise ValueError("give overwrite=True or skip_existing=True, not both")
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
    _same_length(batch, (path_column, jpeg_column))
    targets = _targets(batch[path_column], root, out)
    data = list(batch[jpeg_column])
    if not (overwrite or skip_existing) and errors == "raise":
        existing = [target for (_, target), jpeg in zip(targets, data) if len(jpeg) and os.path.lexists(target)]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise FileExistsError(f"{existing[0]}{more} exists; pass overwrite=True to replace or skip_existing=True "
                                  "to keep what exists")
    outputs, messages = [], []
    for (_, target), jpeg in zip(targets, data):
        message = ""
        if skip_existing and os.path.lexists(target):
            outputs.append(target)  # kept from an earlier run (the encoder skipped its encode: no bytes here)
        elif not len(jpeg):  # a row that failed to encode (errors="record"): nothing to write
            outputs.append("")
        else:
            try:
                os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
                write_file(target, bytes(jpeg), overwrite=overwrite, hint="pass overwrite=True to replace it")
                outputs.append(target)
            except (OSError, ValueError) as exc:
                if errors == "raise":
                    raise
                outputs.append("")
                message = describe_error(exc)
        messages.append(message)
    result = {k: v for k, v in batch.items() if k != jpeg_column}
    result["output"] = np.asarray(outputs, dtype=object)
    if errors == "record":
        before = list(batch["error"]) if "error" in batch else [""] * len(outputs)
        result["error"] = np.asarray([b or m for b, m in zip(before, messages)], dtype=object)
    return result
