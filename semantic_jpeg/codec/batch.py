"""Parallel batch encoding on one machine: :func:`encode_many` and the worker pool behind
``semantic-jpeg encode --jobs N``.

Design:

- Worker *processes* (not threads): the map, the DCT and the entropy coder hold the GIL for part of their work,
  and one process per core scales without contention. Each worker loads the saliency model once, with
  onnxruntime pinned to one intra-op thread when there are several workers (N workers x all-core thread pools
  would oversubscribe the CPU).
- Bounded memory: at most ``max_in_flight`` images (default 2 per worker) are submitted and not yet handed back;
  the input iterable is consumed lazily, so a generator of a million paths never materialises a million images.
- Deterministic: every image is encoded by the same function with the same options whatever the number of
  workers; the output bytes do not depend on ``jobs`` (the map's onnxruntime kernels give bit-identical maps
  with 1 or several intra-op threads on the CPUs we measured; ``tests/test_batch.py`` checks the bytes).
- Workers ignore SIGINT: Ctrl-C reaches the parent only, which stops submitting, terminates the workers and
  re-raises :class:`KeyboardInterrupt` to its caller (files are written by the caller, never by a worker, so a
  terminated worker leaves nothing half-written).

Workers are forked on Linux when this process has a single thread and has not imported onnxruntime (the command
line's case); otherwise they start with ``forkserver`` (forking a process that already runs onnxruntime's thread
pools can deadlock), and with ``spawn`` on other systems. As with any ``multiprocessing`` code, a script that calls
:func:`encode_many` with ``jobs > 1`` must guard its entry point with ``if __name__ == "__main__":``.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import io
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._cliutil import describe_error

__all__ = ["encode_many", "default_jobs", "BatchError"]


class BatchError(RuntimeError):
    """An item of a batch could not be encoded; ``index`` is its position in the input, ``cause`` the error."""

    def __init__(self, index: int, cause: BaseException):
        super().__init__(f"item {index}: {describe_error(cause)}")
        self.index = index
        self.cause = cause


def default_jobs() -> int:
    """Number of CPUs this process may run on (its affinity mask, which containers and ``taskset`` restrict;
    ``os.cpu_count()`` counts the whole machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# ----- worker side
def _init_worker(pin_threads: bool, owner: int, max_image_pixels) -> None:
    """Runs once in each worker: ignore Ctrl-C (the parent handles it), exit when the process that owns the pool
    dies, take the owner's decompression-bomb limit, and give the default models one onnxruntime intra-op thread
    when several workers share the CPU."""
    from PIL import Image

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(owner)
    Image.MAX_IMAGE_PIXELS = max_image_pixels  # a forkserver or spawned worker would have Pillow's default
    if pin_threads:
        pin_default_models(1)


def _exit_with(owner: int) -> None:
    """End this worker when ``owner`` (the process that started the pool) dies, however it dies (SIGKILL,
    SIGTERM, a crash): otherwise the workers would wait on their pipes forever, holding their memory. On Linux the
    kernel signals a forked worker when its parent exits; a thread also polls the owner, which covers workers
    started by a forkserver (whose parent is the server) and other systems."""
    if sys.platform.startswith("linux") and os.getppid() == owner:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover -- a libc without prctl: the thread below remains
            pass

    def watch():
        while True:
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover -- alive, owned by another user
                pass
            time.sleep(0.5)

    threading.Thread(target=watch, name="semantic_jpeg-owner-watch", daemon=True).start()


def _recording_warnings(fn, item, *args):
    """``fn(item, *args)`` in a worker, with the warnings it raised (category, message text), which the parent
    raises again: a worker's warnings would otherwise only reach its stderr, where the caller cannot catch or
    filter them."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn(item, *args)
    return value, [(w.category, str(w.message)) for w in caught]


def pin_default_models(intra_op_num_threads: int | None) -> None:
    """Give the shared default models (the gaze model of ``saliency=None``, the CAM model of MS-ROI / R-CAM)
    this many onnxruntime intra-op threads; each is created at its first use (none is loaded here)."""
    from ..onnx_models import cam_model
    cam_model.set_default_model_threads(intra_op_num_threads)
    try:
        from ..onnx_models import gaze_model
    except ImportError:  # pragma: no cover -- a build without the gaze model
        return
    pin = getattr(gaze_model, "set_default_gaze_model_threads", None)
    if pin is not None:
        pin(intra_op_num_threads)


def _open_image(source):
    """A loaded PIL image from a path or encoded bytes (the file is closed before returning)."""
    from PIL import Image

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with Image.open(handle) as image:
        image.load()
    return image


def _encode_item(item, options: dict):
    """Encode one item of :func:`encode_many` (in a worker or in-process)."""
    from .encoder import encode

    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        item = _open_image(item)
    return encode(item, return_result=True, **options)


# ----- the pool
def _context():
    """``fork`` on Linux when it is safe: no other thread in this process and onnxruntime not imported (the
    command line's case; workers start in milliseconds with the modules already imported). ``forkserver``
    otherwise (a notebook that already ran a model), with the codec and onnxruntime imported once in the
    server; ``spawn`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    if "onnxruntime" not in sys.modules and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["onnxruntime", "semantic_jpeg.codec.encoder", "semantic_jpeg.codec.batch"])
    return context


class WorkerPool:
    """Runs ``fn(item, *args)`` over ``items`` in ``jobs`` worker processes (in-process when ``jobs == 1``),
    at most ``max_in_flight`` items at a time, yielding ``(index, item, result_or_exception, ok)``; in input
    order when ``ordered`` else as completed. Per-item exceptions are yielded, not raised; warnings raised in a
    worker are raised again in this process. A worker that dies (killed, out of memory) fails the items in flight
    at that moment (at most ``max_in_flight``) and the pool is restarted for the rest. Workers exit when this
    process dies."""

    def __init__(self, fn: Callable, args: tuple = (), *, jobs: int | None = None, ordered: bool = True,
                 max_in_flight: int | None = None, pin_threads: bool | None = None):
        self.fn, self.args = fn, args
        self.jobs = default_jobs() if jobs is None else jobs
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
        self.ordered = ordered
        self.max_in_flight = max_in_flight if max_in_flight is not None else 2 * self.jobs
        if isinstance(self.max_in_flight, bool) or not isinstance(self.max_in_flight, int) or self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be a positive integer, got {max_in_flight!r}")
        self.pin_threads = self.jobs > 1 if pin_threads is None else pin_threads
        self._executor: cf.ProcessPoolExecutor | None = None

    def _start(self) -> cf.ProcessPoolExecutor:
        context = _context()
        from PIL import Image

        executor = cf.ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_init_worker,
                                          initargs=(self.pin_threads, os.getpid(), Image.MAX_IMAGE_PIXELS))
        self._executor = executor
        if context.get_start_method() == "fork":  # fork all workers now, while this process has one thread
            for _ in executor.map(abs, range(self.jobs)):
                pass
        return executor

    def start(self) -> None:
        """Start the worker processes now (otherwise the first item starts them)."""
        if self.jobs > 1 and self._executor is None:
            self._start()

    def terminate(self) -> None:
        """Stop the workers now (running items are abandoned)."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        manager = getattr(executor, "_executor_manager_thread", None)  # shutdown() forgets it
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
        # and the executor's manager thread: while it lives, the next pool of this process cannot fork (see
        # _context) and starts its workers through a forkserver instead (measured: 0.2 s more per batch)
        if manager is not None:
            manager.join(timeout=5)

    def run(self, items: Iterable) -> Iterator[tuple[int, Any, Any, bool]]:
        if self.jobs == 1:
            yield from self._run_inline(items)
            return
        try:
            yield from self._run_pool(items)
        finally:  # normal end, an exception, Ctrl-C, or the consumer closing the generator early
            self.terminate()

    def _run_inline(self, items):
        for index, item in enumerate(items):
            try:
                yield index, item, self.fn(item, *self.args), True
            except (KeyboardInterrupt, SystemExit, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 -- per-item errors are reported, the batch goes on
                yield index, item, exc, False

    def _run_pool(self, items):
        executor = self._executor if self._executor is not None else self._start()
        source = enumerate(items)
        pending: collections.OrderedDict = collections.OrderedDict()  # index -> (item, future), in submission order
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.max_in_flight:
                try:
                    index, item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending[index] = (item, executor.submit(_recording_warnings, self.fn, item, *self.args))
            if not pending:
                return
            if self.ordered:
                index = next(iter(pending))
                cf.wait([pending[index][1]])
                ready = [index]
            else:
                done, _ = cf.wait([f for _, f in pending.values()], return_when=cf.FIRST_COMPLETED)
                ready = [i for i, (_, f) in pending.items() if f in done]
            broken = False
            for index in ready:
                item, future = pending.pop(index)
                try:
                    value, caught = future.result()
                    for category, message in caught:  # raised again here, where the caller's filters apply
                        warnings.warn(message, category, stacklevel=2)
                    yield index, item, value, True
                except cf.process.BrokenProcessPool as exc:
                    broken = True
                    yield index, item, RuntimeError(f"a worker process died while encoding it ({exc})"), False
                except Exception as exc:  # noqa: BLE001
                    yield index, item, exc, False
            if broken:  # the pool is unusable: fail what it was running, restart it for the rest
                for index, (item, future) in list(pending.items()):
                    if future.done() and not future.cancelled() and future.exception() is None:
                        continue  # finished before the crash: its result is kept
                    pending.pop(index)
                    yield index, item, RuntimeError("a worker process died while this item was in flight"), False
                self.terminate()
                executor = self._start()


def encode_many(images: Iterable, *, jobs: int | None = None, ordered: bool = True, max_in_flight: int | None = None,
                return_exceptions: bool = False, **encode_options) -> Iterator:
    """Encode many images in parallel worker processes; yields one :class:`~semantic_jpeg.EncodeResult` per
    input (``result.data`` is the JPEG file).

    images: any iterable (consumed lazily) of file paths, encoded image bytes, PIL images or numpy arrays (as
        :func:`semantic_jpeg.encode` takes them). Paths and bytes are decoded in the workers.
    jobs: worker processes (default: the CPUs this process may use, :func:`default_jobs`); 1 encodes in this
        process. Output bytes do not depend on ``jobs``.
    ordered: yield in input order (default); False yields as each image completes, as ``(index, result)``.
    max_in_flight: images submitted and not yet yielded (default ``2 * jobs``): bounds memory.
    return_exceptions: yield a :class:`BatchError` in place of a failed image's result instead of raising it
        (the rest of the batch still runs).
    encode_options: keyword arguments of :func:`semantic_jpeg.encode` (not ``fp`` or ``return_result``);
        ``saliency`` must be picklable when ``jobs > 1`` (an array, or None for the shipped model).

    Example (in a script, under ``if __name__ == "__main__":`` when ``jobs > 1``)::

        for path, result in zip(paths, semantic_jpeg.encode_many(paths, jobs=4, quality=80)):
            Path(path).with_suffix(".sem.jpg").write_bytes(result.data)
    """
    for key in ("fp", "return_result"):
        if key in encode_options:
            raise TypeError(f"encode_many does not take {key!r}: it yields EncodeResult objects")
    if isinstance(images, (str, bytes, os.PathLike)):
        raise TypeError("images must be an iterable of images or paths, not a single path or bytes object")
    if hasattr(images, "__array_interface__") or hasattr(images, "getbands"):  # iterating would yield its rows
        raise TypeError(f"images must be an iterable of images (e.g. a list), not a single image "
                        f"({type(images).__name__}); a stack of same-size images: list(array)")
    pool = WorkerPool(_encode_item, (encode_options,), jobs=jobs, ordered=ordered, max_in_flight=max_in_flight)
    return _encode_many(pool, images, ordered, return_exceptions)


def _encode_many(pool, images, ordered, return_exceptions):
    for index, _, value, ok in pool.run(images):
        if not ok:
            value = BatchError(index, value)
            if not return_exceptions:
                raise value from value.cause
        yield value if ordered else (index, value)
