"""Native C kernels (built by cffi at install from the ``*.c``/``*.h`` pairs in this folder).

``lib`` exposes the C functions, ``ffi`` the cffi helpers. ``as_pointer`` (inputs) and ``as_output_pointer``
(buffers a kernel writes, which must be writeable) check an array's dtype and contiguity before handing its buffer
to C, so a wrong array raises here instead of crashing in C.
``workspace`` lends a kernel scratch memory that is kept between calls.
"""
import threading

import numpy as np

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - only on a broken install
    raise ImportError(
        "semantic_jpeg's native module is not built. Reinstall the package (pip install -e .) "
        "or run: python semantic_jpeg/native/build_native.py"
    ) from exc

_CTYPES = {
    np.dtype(np.uint8): "uint8_t[]",
    np.dtype(np.int16): "int16_t[]",
    np.dtype(np.uint16): "uint16_t[]",
    np.dtype(np.int32): "int32_t[]",
    np.dtype(np.uint32): "uint32_t[]",
    np.dtype(np.int64): "int64_t[]",
    np.dtype(np.float32): "float[]",
    np.dtype(np.float64): "double[]",
}


def as_pointer(array: np.ndarray, dtype) -> "ffi.CData":
    """Typed view of ``array``'s buffer for a C pointer argument; it must be C-contiguous with exactly
    ``dtype``. The view keeps the array alive, so a temporary array is safe to pass."""
    dtype = np.dtype(dtype)
    return ffi.from_buffer(_CTYPES[dtype], _checked(array, dtype), require_writable=False)


def as_output_pointer(array: np.ndarray, dtype) -> "ffi.CData":
    """Like :func:`as_pointer`, for a buffer the kernel writes: a read-only array (``writeable=False``, a view of
    ``bytes``, a read-only memory map) raises ValueError instead of being written (or crashing the process)."""
    dtype = np.dtype(dtype)
    if not array.flags.writeable:
        raise ValueError("native kernel output must be a writeable array, got a read-only one")
    return ffi.from_buffer(_CTYPES[dtype], _checked(array, dtype), require_writable=True)


def _checked(array: np.ndarray, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if array.dtype != dtype:
        raise TypeError(f"native kernel expects {dtype}, got {array.dtype}")
    if not array.flags.c_contiguous:
        raise ValueError("native kernel expects a C-contiguous array")
    return array


# Scratch memory of each thread, reused across calls: a fresh allocation of a few hundred kB costs one page fault
# per 4 kB page on first touch (glibc returns large blocks to the system on free), as much time as a 224x224
# wavelet denoising. Kept up to WORKSPACE_KEPT_BYTES per thread (a 1920x1080 denoising needs 33 MB); larger
# requests are allocated for the call only.
WORKSPACE_KEPT_BYTES = 64 << 20
_workspaces = threading.local()


def workspace(count: int, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of ``count`` elements of ``dtype`` for a kernel's scratch use.

    Its memory is this thread's kept workspace (grown as needed), so it is only valid until the next call of
    ``workspace`` in the same thread: pass it to one kernel call and drop it."""
    dtype = np.dtype(dtype)
    nbytes = int(count) * dtype.itemsize
    kept = getattr(_workspaces, "buffer", None)
    if kept is None or kept.nbytes < nbytes:
        if nbytes > WORKSPACE_KEPT_BYTES:
            return np.empty(count, dtype)
        kept = _workspaces.buffer = np.empty(nbytes, np.uint8)
    return kept[:nbytes].view(dtype)


__all__ = ["ffi", "lib", "as_pointer", "as_output_pointer", "workspace"]
