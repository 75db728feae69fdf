"""Packaging: ``python -m build`` makes an sdist that carries the C sources and a wheel that carries the compiled
native module, the shipped models and the licences; the wheel installs into a fresh virtual environment and
encodes an image there with no C compiler on the PATH.

The fresh environment gets the runtime's dependencies (numpy, Pillow, cffi, onnxruntime, ...) from the
environment running the tests through a ``.pth`` path entry, so the test needs no network. The package itself
comes only from the wheel: the test runs outside the repository and checks where ``semantic_jpeg`` was imported
from. Building runs without build isolation when setuptools, wheel and cffi are importable here (offline, about
20 s on 2 cores), else with it (downloads the build requirements).
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NATIVE_SOURCES = {p.name for p in (ROOT / "semantic_jpeg" / "native").glob("*.[ch]") if p.name != "_native.c"}

pytestmark = pytest.mark.slow


def _version() -> str:
    namespace: dict = {}
    exec((ROOT / "semantic_jpeg" / "_version.py").read_text(encoding="utf-8"), namespace)
    return namespace["__version__"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package is not installed (pip install -c constraints.txt -e '.[dev]')")
    out = tmp_path_factory.mktemp("dist")
    # build from a copy of the sources (git's files, tracked or not, without ignored build products), so that the
    # build never writes into the working tree
    source = tmp_path_factory.mktemp("src") / "semantic_jpeg"
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=False)
    if tracked.returncode == 0 and tracked.stdout:
        for name in tracked.stdout.decode().split("\0"):
            if name and (ROOT / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, source / name)
    else:  # not a git checkout (e.g. an unpacked sdist): copy what is there, without build products
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.so",
                                                                     "*.egg-info", "__pycache__", "cache"))
    offline = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel", "cffi"))
    command = [sys.executable, "-m", "build", "--outdir", str(out), str(source)]
    if offline:
        command.insert(3, "--no-isolation")
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "License classifiers are deprecated" not in result.stdout + result.stderr
    assert "project.license` as a TOML table is deprecated" not in result.stdout + result.stderr
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return sdists[0], wheels[0]


def test_sdist_carries_the_c_sources_and_licences(dist):
    sdist, _ = dist
    assert sdist.name == f"semantic_jpeg-{_version()}.tar.gz"
    with tarfile.open(sdist) as archive:
        names = {Path(n).relative_to(Path(n).parts[0]).as_posix() for n in archive.getnames() if "/" in n}
    native = {Path(n).name for n in names if n.startswith("semantic_jpeg/native/")}
    assert NATIVE_SOURCES and NATIVE_SOURCES <= native, NATIVE_SOURCES - native
    assert {"setup.py", "pyproject.toml", "semantic_jpeg/native/build_native.py", "LICENSE",
            "THIRD_PARTY_LICENSES.md", "semantic_jpeg/onnx_models/efficientnet_lite0_cam.onnx"} <= names
    assert not any(n.endswith(".so") for n in names), "a compiled module leaked into the sdist"


def test_wheel_carries_the_compiled_module_models_and_metadata(dist):
    _, wheel = dist
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"semantic_jpeg-{_version()}.dist-info/METADATA").decode()
    assert any(n.startswith("semantic_jpeg/native/_native") and n.endswith(".so") for n in names)
    manifests = [n for n in names if n.startswith("semantic_jpeg/onnx_models/") and n.endswith(".json")]
    assert manifests
    with zipfile.ZipFile(wheel) as archive:
        for manifest in manifests:  # every model file a shipped manifest names is in the wheel
            fields = json.loads(archive.read(manifest))
            files = [fields["file"], fields.get("cam", {}).get("head_file"), fields.get("classes", {}).get("table")]
            for file in filter(None, files):
                assert f"semantic_jpeg/onnx_models/{file}" in names, (manifest, file)
    assert f"Version: {_version()}" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert {f"semantic_jpeg-{_version()}.dist-info/licenses/LICENSE",
            f"semantic_jpeg-{_version()}.dist-info/licenses/THIRD_PARTY_LICENSES.md"} <= names


def test_wheel_installs_and_encodes_without_a_compiler(dist, tmp_path):
    pytest.importorskip("onnxruntime")
    _, wheel = dist
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies come from this environment (path entries only: its editable install of semantic_jpeg is a
    # .pth hook, which a path entry does not run); the package itself is unpacked from the wheel
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    bin_dir = tmp_path / "bin"  # a PATH without cc, gcc, clang
    bin_dir.mkdir()
    environment = {"PATH": f"{env_dir / 'bin'}{os.pathsep}{bin_dir}", "HOME": str(tmp_path), "CC": "false",
                   "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1"}
    script = (
        "import io, sys\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "import semantic_jpeg\n"
        "print(semantic_jpeg.__file__)\n"
        "print(semantic_jpeg.__version__)\n"
        "rng = np.random.default_rng(0)\n"
        "img = (rng.random((96, 128, 3)) * 64 + np.linspace(0, 180, 128)[None, :, None]).astype(np.uint8)\n"
        "data = semantic_jpeg.encode(img)\n"
        "decoded = np.asarray(Image.open(io.BytesIO(data)))\n"
        "assert decoded.shape == img.shape, decoded.shape\n"
        "print(len(data))\n")
    result = subprocess.run([str(python), "-c", script], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    module_file, version, size = result.stdout.split()[-3:]
    assert Path(module_file).resolve().is_relative_to(site.resolve()), module_file
    assert version == _version()
    assert int(size) > 0
