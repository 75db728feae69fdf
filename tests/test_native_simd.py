"""The AVX2 and the baseline copies of the native kernels give bit-identical results.

The codec's claim that a file does not depend on the CPU that wrote it (and the wavelet filter's that its output
does not) rests on the ``target_clones("avx2", "default")`` kernels rounding exactly alike (no FMA contraction).
This test builds a second copy of the native module with the clones switched off
(``-DSEMANTIC_JPEG_NO_SIMD_CLONES``: the baseline x86-64 code only) and compares its outputs, byte for byte,
with the installed module's (which runs the AVX2 copy on a CPU that has AVX2).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import semantic_jpeg

pytestmark = pytest.mark.slow

PACKAGE = Path(semantic_jpeg.__file__).resolve().parent

# Run in a child process against either build: writes the JPEG bytes of a fixed image and map (dct mode, the
# native forward DCT and requantisation; the default rdo mode, its RDO kernel) and the bytes of a wavelet
# denoising.
PROBE = r"""
import sys
import numpy as np
import semantic_jpeg
from semantic_jpeg.defense_filters import wavelet_denoise

out = sys.argv[1]
rng = np.random.default_rng(7)
y, x = np.mgrid[0:131, 0:197].astype(np.float32)
image = (127 + 60 * np.sin(x / 9)[..., None] * np.cos(y / 13)[..., None]
         + rng.normal(0, 12, (131, 197, 3))).clip(0, 255).astype(np.uint8)
saliency = np.exp(-((x - 120) ** 2 + (y - 60) ** 2) / 2000).astype(np.float32)
data = semantic_jpeg.encode(image, saliency=saliency, mode="dct", quality_range=(30, 70))
open(out + ".jpg", "wb").write(data)
# the default mode: forward DCT, the RDO kernel (rate control on its estimates, then a full pass) and the coder
rdo = semantic_jpeg.encode(image, saliency=saliency, quality=70)
rdo += semantic_jpeg.encode(image, saliency=saliency, quality=70, rate_control=False)
# the RDO kernel itself from the nearest values (its AVX2 copy takes eight blocks at a time; 1003 leaves a
# scalar tail), at several lambdas, with symbol counts
from semantic_jpeg.codec import rdo as rdo_module
raw = (rng.laplace(0, 1, (1003, 64)) * np.geomspace(400, 2, 64)).astype(np.float32)
raw[::7] = np.round(raw[::7] / 8) * 8 + 4  # ties at half a step of an even table
table = (4 + 2 * (np.arange(64) // 4)).astype(np.uint16)
weights = rng.uniform(0.2, 4, 1003)
lengths = rng.uniform(2, 16, 256).astype(np.float32)
for lam in (0.5, 10.0, 200.0, 5000.0):
    counts = np.zeros(257, np.int64)
    rdo += rdo_module.optimise_component(raw, None, table, weights, lam, lengths, ac_freq=counts).tobytes()
    rdo += counts.tobytes()
open(out + ".rdo", "wb").write(rdo)
denoised = wavelet_denoise(image.copy(), 0.05)
open(out + ".wavelet", "wb").write(np.ascontiguousarray(denoised).tobytes())
import semantic_jpeg.native._native as native
open(out + ".module", "w").write(native.__file__)
"""


def _has_avx2() -> bool:
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text().replace(chr(10), ' ')} "
    except OSError:
        return False


def _probe(python_path: Path, out: Path, **env_vars) -> None:
    env = dict(os.environ, PYTHONPATH=str(python_path), **env_vars)
    subprocess.run([sys.executable, "-c", PROBE, str(out)], check=True, env=env, cwd=out.parent)


@pytest.mark.skipif(sys.platform != "linux" or not _has_avx2(), reason="needs x86-64 Linux with AVX2")
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler")
def test_avx2_and_baseline_kernels_write_identical_bytes(tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(PACKAGE, copy / "semantic_jpeg",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "_native.c", "*.o"))
    env = dict(os.environ, CFLAGS=os.environ.get("CFLAGS", "") + " -DSEMANTIC_JPEG_NO_SIMD_CLONES")
    build = subprocess.run([sys.executable, "semantic_jpeg/native/build_native.py"], cwd=copy, env=env,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    assert list((copy / "semantic_jpeg/native").glob("_native*.so")), "the baseline build wrote no module"

    _probe(PACKAGE.parent, tmp_path / "installed")
    _probe(copy, tmp_path / "baseline")
    for suffix in (".jpg", ".rdo", ".wavelet"):
        installed = (tmp_path / f"installed{suffix}").read_bytes()
        baseline = (tmp_path / f"baseline{suffix}").read_bytes()
        assert len(installed) > 100
        assert installed == baseline, f"{suffix}: the AVX2 and baseline kernels differ"
    # the two runs really loaded two different builds
    modules = {(tmp_path / f"{name}.module").read_text() for name in ("installed", "baseline")}
    assert len(modules) == 2 and any(str(copy) in m for m in modules)


def test_numpy_simd_dispatch_does_not_change_the_bytes(tmp_path):
    """numpy picks SIMD kernels by CPU (e.g. AVX-512 SVML for pow): the encoder's float steps in numpy (block
    weights, rate control) must not make the files depend on it. Runs the probe with every numpy dispatch target
    above its baseline switched off (NPY_DISABLE_CPU_FEATURES) and compares the bytes."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    enabled = [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]
    if not enabled:
        pytest.skip("numpy has no SIMD dispatch target above its baseline on this CPU")
    _probe(PACKAGE.parent, tmp_path / "dispatched")
    _probe(PACKAGE.parent, tmp_path / "baseline", NPY_DISABLE_CPU_FEATURES=" ".join(enabled))
    for suffix in (".jpg", ".rdo", ".wavelet"):
        dispatched = (tmp_path / f"dispatched{suffix}").read_bytes()
        assert len(dispatched) > 100
        assert dispatched == (tmp_path / f"baseline{suffix}").read_bytes(), f"{suffix} depends on numpy's SIMD"
