"""On-disk array cache keyed by a hash of everything that determines the result (attack or defense name and
parameters, the exact input image bytes, model and library versions)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from semantic_jpeg._cliutil import describe_error, write_file


def user_cache_dir() -> str:
    """The evaluation's default cache folder: ``$XDG_CACHE_HOME/semantic_jpeg/evaluation`` (``~/.cache/...`` when
    the variable is unset), never a folder inside the package or a source checkout."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "semantic_jpeg", "evaluation")


def digest(*parts) -> str:
    """Stable sha256 hex digest of JSON-serialisable parts and numpy arrays (dtype, shape and bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"ndarray{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def key_seed(key: str, seed: int) -> int:
    """Seed of a random draw tied to one cache entry: the key's first 8 hex digits XOR the run's ``seed``."""
    return int(key[:8], 16) ^ seed


class ArrayCache:
    """One ``.npy`` file per key under ``root/<namespace>/``; ``root=None`` disables caching."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root)

    def path(self, namespace: str, key: str) -> Path:
        if self.root is None:
            raise RuntimeError("caching is disabled")
        return self.root / namespace / f"{key}.npy"

    def load(self, namespace: str, key: str) -> np.ndarray | None:
        """The cached array, or None when there is none. An entry that cannot be read (truncated or corrupted
        on disk) counts as missing, with a warning naming its file: it is computed and stored again."""
        if self.root is None:
            return None
        p = self.path(namespace, key)
        if not p.is_file():
            return None
        try:
            return np.load(p)
        except (OSError, ValueError, EOFError) as exc:
            print(f"warning: cache entry {p} is unreadable ({describe_error(exc, p)}); computing it again",
                  file=sys.stderr)
            return None

    def save(self, namespace: str, key: str, value: np.ndarray) -> None:
        if self.root is None:
            return
        p = self.path(namespace, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, value)
        write_file(p, buffer.getvalue(), overwrite=True)  # atomic: a killed run never leaves a truncated entry

    def map(self, namespace: str, keys: list[str], compute: Callable[[list[int]], np.ndarray], chunk: int | None = None,
            desc: str | None = None) -> np.ndarray:
        """Stack the cached arrays for ``keys``; ``compute(missing_indices)`` returns the missing ones (stacked
        along axis 0, in order). It is called on at most ``chunk`` missing indices at a time (default: all at
        once) and each chunk is stored before the next, so an interrupted run loses at most one chunk.
        ``desc``: a progress bar over the missing entries."""
        found = [self.load(namespace, k) for k in keys]
        missing = [i for i, v in enumerate(found) if v is None]
        step = chunk or max(len(missing), 1)
        with tqdm(total=len(missing), desc=desc, unit="img", leave=False, disable=desc is None or not missing) as bar:
            for start in range(0, len(missing), step):
                part = missing[start:start + step]
                fresh = compute(part)
                if len(fresh) != len(part):
                    raise RuntimeError(f"compute returned {len(fresh)} results for {len(part)} inputs")
                for i, value in zip(part, fresh):
                    self.save(namespace, keys[i], value)
                    found[i] = value
                bar.update(len(part))
        return np.stack(found)
