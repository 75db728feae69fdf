"""semantic_jpeg.training.onnx_graph: folding traced TF "SAME" padding into the convolutions keeps the outputs
(on sides that are multiples of the network's stride), removes the Pad/Slice chains, and leaves other pads."""
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from semantic_jpeg.training.efficientnet import TFSameConv2d  # noqa: E402
from semantic_jpeg.training.onnx_graph import fold_same_padding, prune_unused  # noqa: E402


class _Net(nn.Module):
    """Every padded layer kind of the backbone (stride 1 and 2, kernels 3 and 5, depthwise, 1x1 unpadded) and an
    edge-padded blur like the gaze readout's, which must stay as it is."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.ModuleList([
            TFSameConv2d(3, 8, 3, stride=2), TFSameConv2d(8, 8, 3, groups=8), TFSameConv2d(8, 8, 5, stride=2, groups=8),
            TFSameConv2d(8, 16, 1), TFSameConv2d(16, 16, 5, groups=16), TFSameConv2d(16, 16, 3, stride=2, groups=16)])
        self.blur = nn.Conv2d(16, 1, 3)

    def forward(self, x):
        for layer in self.layers:
            x = F.relu6(layer(x))
        return self.blur(F.pad(x, [1, 1, 1, 1], mode="replicate"))


def _export():
    buffer = io.BytesIO()
    torch.onnx.export(_Net().eval(), (torch.zeros(1, 3, 64, 96),), buffer, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "oh", 3: "ow"}})
    return onnx.load_from_string(buffer.getvalue())


def _run(model, x):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_folding_keeps_the_outputs_on_sides_that_are_multiples_of_the_stride():
    traced = _export()
    ops = [n.op_type for n in traced.graph.node]
    assert ops.count("Pad") == 6  # five padded convolutions + the edge pad
    folded = onnx.ModelProto()
    folded.CopyFrom(traced)
    assert fold_same_padding(folded) == 5
    onnx.checker.check_model(folded)
    after = [n.op_type for n in folded.graph.node]
    assert after.count("Pad") == 1 and "Mod" not in after  # the edge pad stays; no parity arithmetic is left
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 64, 96), (2, 3, 32, 32), (1, 3, 96, 40)]:  # multiples of 8, this network's stride
        x = rng.standard_normal(shape, dtype=np.float32)
        expected = _run(traced, x)
        np.testing.assert_allclose(_run(folded, x), expected, rtol=0, atol=1e-5)
        with torch.no_grad():
            np.testing.assert_allclose(_Net().eval()(torch.from_numpy(x)).numpy(), expected, rtol=0, atol=1e-5)
    assert fold_same_padding(folded) == 0  # idempotent


def test_an_odd_side_shows_why_the_fold_needs_multiples_of_the_stride():
    # documented limit: the traced graph drops the first padded row only on even sides; the folded one always
    traced = _export()
    folded = onnx.ModelProto()
    folded.CopyFrom(traced)
    fold_same_padding(folded)
    x = np.random.default_rng(1).standard_normal((1, 3, 65, 96), dtype=np.float32)
    wrong, right = _run(folded, x), _run(traced, x)
    assert wrong.shape != right.shape  # (8, 12) instead of TF "SAME"'s ceil(65 / 8) = 9 rows


def test_a_pad_of_the_channels_before_a_convolution_is_refused():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    pads = onnx.numpy_helper.from_array(np.array([0, 1, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    weight = onnx.numpy_helper.from_array(np.ones((1, 3, 3, 3), np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
         onnx.helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3], pads=[0, 0, 0, 0])],
        "g", [x], [y], initializer=[pads, weight])
    with pytest.raises(ValueError, match="spatial-only"):
        fold_same_padding(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]))


def test_prune_unused_drops_dead_nodes_and_initializers():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    dead = onnx.numpy_helper.from_array(np.ones(2, np.float32), "dead")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Relu", ["x"], ["y"]), onnx.helper.make_node("Neg", ["dead"], ["unused"])],
        "g", [x], [y], initializer=[dead])
    model = onnx.helper.make_model(graph)
    prune_unused(model)
    assert [n.op_type for n in model.graph.node] == ["Relu"] and not model.graph.initializer
