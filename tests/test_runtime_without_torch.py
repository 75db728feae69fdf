"""The runtime (codec, filters, ONNX inference, CLI) must work where torch cannot be imported."""
import subprocess
import sys

SCRIPT = """
import sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
import numpy as np
import semantic_jpeg, semantic_jpeg.defense_filters, semantic_jpeg.onnx_models, semantic_jpeg.cli
from skimage import data
rgb = np.ascontiguousarray(data.chelsea())
out = semantic_jpeg.encode(rgb, match_jpeg_quality=50)
purified = semantic_jpeg.defense_filters.preset("pd+rcam+dwt")(rgb, rng=0)  # R-CAM by onnxruntime
assert purified.shape == rgb.shape and purified.dtype == np.uint8
from semantic_jpeg.image_input import to_array
assert to_array(rgb[:, :, ::-1], "BGR").base is not None
semantic_jpeg.cli.build_parser()
print("ok", len(out))
"""


def test_runtime_imports_and_encodes_without_torch():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
