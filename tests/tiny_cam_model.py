"""A tiny user CAM model for the tests (no test functions here): one 32x32 stride-32 conv to 4 features, global
average pooling and a 3-class linear head; no activation noise inputs."""
from pathlib import Path

import numpy as np


def write_tiny_cam_files(folder: Path, seed: int) -> None:
    """Write ``folder/tiny.onnx`` and its CAM head ``folder/tiny.head.npy`` (float32 (3, 5) = [W | b]), with
    weights drawn from ``seed``. Needs the ``onnx`` package."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    conv = rng.standard_normal((4, 3, 32, 32)).astype(np.float32) * 0.05
    head = rng.standard_normal((3, 5)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "conv"], ["features"], strides=[32, 32]),
         helper.make_node("ReduceMean", ["features"], ["pooled"], axes=[2, 3], keepdims=0),
         helper.make_node("Gemm", ["pooled", "head_w", "head_b"], ["logits"], transB=1)],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 4, "fh", "fw"])],
        [numpy_helper.from_array(conv, "conv"), numpy_helper.from_array(head[:, :4].copy(), "head_w"),
         numpy_helper.from_array(head[:, 4].copy(), "head_b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # any onnxruntime
    onnx.save(model, folder / "tiny.onnx")
    np.save(folder / "tiny.head.npy", head)
