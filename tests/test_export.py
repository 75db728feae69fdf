"""The export command reproduces the shipped model files; the torch EfficientNet-Lite0 is size-independent."""
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("onnx")

from semantic_jpeg.onnx_models import read_manifest  # noqa: E402
from semantic_jpeg.onnx_models.cam_model import PACKAGE_DIR  # noqa: E402
from semantic_jpeg.training import class_table  # noqa: E402
from semantic_jpeg.training import export as export_module  # noqa: E402
from semantic_jpeg.training.efficientnet import (  # noqa: E402
    EfficientNetLite0,
    TFSameConv2d,
    efficientnet_lite0,
    pretrained_weights_path,
)

MANIFEST = PACKAGE_DIR / f"{export_module.MODEL_STEM}.json"


def _without_hashes(value):
    """The manifest with every ``*sha256`` entry dropped (hashes of float files differ between CPUs)."""
    if isinstance(value, dict):
        return {k: _without_hashes(v) for k, v in value.items() if not k.endswith("sha256")}
    if isinstance(value, list):
        return [_without_hashes(v) for v in value]
    return value


def _graph_signature(model):
    """Everything of an ONNX graph except the initializers' values: nodes, attributes, I/O, initializer specs."""
    from onnx import helper, numpy_helper  # noqa: F401

    graph = model.graph
    nodes = []
    for node in graph.node:
        attributes = []
        for attribute in node.attribute:
            value = helper.get_attribute_value(attribute)
            if hasattr(value, "SerializeToString"):  # a tensor attribute (Constant): compare its shape and type
                value = (tuple(value.dims), value.data_type)
            attributes.append((attribute.name, repr(value)))
        nodes.append((node.op_type, tuple(node.input), tuple(node.output), tuple(attributes)))
    initializers = [(t.name, tuple(t.dims), t.data_type) for t in graph.initializer]
    io = [(v.name, str(v.type)) for v in list(graph.input) + list(graph.output)]
    return nodes, initializers, io, [(o.domain, o.version) for o in model.opset_import]


def _constant_tensors(model):
    """Initializers and Constant-node tensors by name, as numpy arrays."""
    from onnx import helper, numpy_helper

    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        for attribute in node.attribute:
            value = helper.get_attribute_value(attribute)
            if hasattr(value, "SerializeToString") and node.output:
                tensors[f"{node.output[0]}:{attribute.name}"] = numpy_helper.to_array(value)
    return tensors


def test_export_reproduces_shipped_files(tmp_path):
    """A re-export matches the shipped model: the graph exactly, the float weights and outputs to a tolerance.

    The weights come out of float arithmetic (BatchNorm folding) and differ in the last bits between CPUs
    (up to 4e-6 seen), so the sha256 in the manifest protects the shipped file, not a re-export.
    """
    import onnx
    import onnxruntime as ort

    shipped = read_manifest(MANIFEST)
    if shipped["producer"]["torch"] != torch.__version__:
        pytest.skip(f"shipped files were exported with torch {shipped['producer']['torch']}")
    shutil.copy(PACKAGE_DIR / export_module.CLASS_TABLE, tmp_path / export_module.CLASS_TABLE)
    assert export_module.main(["--out", str(tmp_path)]) == 0
    produced = read_manifest(tmp_path / MANIFEST.name)
    assert _without_hashes(produced) == _without_hashes(shipped)
    assert produced["classes"]["table_sha256"] == shipped["classes"]["table_sha256"]  # text: exact

    shipped_model = onnx.load(str(PACKAGE_DIR / shipped["file"]))
    produced_model = onnx.load(str(tmp_path / produced["file"]))
    assert _graph_signature(produced_model) == _graph_signature(shipped_model)
    shipped_tensors, produced_tensors = _constant_tensors(shipped_model), _constant_tensors(produced_model)
    assert shipped_tensors.keys() == produced_tensors.keys()
    for name, value in shipped_tensors.items():
        np.testing.assert_allclose(produced_tensors[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(np.load(tmp_path / shipped["cam"]["head_file"]),
                               np.load(PACKAGE_DIR / shipped["cam"]["head_file"]), rtol=1e-5, atol=1e-6)

    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 96, 128)).astype(np.float32)
    feeds = {"image": x}
    for spec in shipped["noise_inputs"]:
        feeds[spec["name"]] = np.zeros((1, spec["channels"], 96 // spec["stride"], 128 // spec["stride"]), np.float32)
    outputs = [ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
               for path in (PACKAGE_DIR / shipped["file"], tmp_path / produced["file"])]
    for a, b in zip(*outputs):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3)


def test_tf_same_padding_matches_library_dynamic_padding():
    from efficientnet_lite_pytorch import EfficientNet

    reference = EfficientNet.from_name("efficientnet-lite0", image_size=None)  # eager-only dynamic padding
    reference.load_state_dict(torch.load(pretrained_weights_path(), weights_only=True))
    reference.eval()
    model = efficientnet_lite0(pretrained=True)
    assert sum(isinstance(m, TFSameConv2d) for m in model.modules()) > 40
    for h, w in [(224, 224), (97, 161), (33, 64)]:
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=0)


def test_unit_range_classifier_equals_normalised_model():
    net = efficientnet_lite0(pretrained=True)
    wrapped = efficientnet_lite0(pretrained=True, unit_range_input=True)
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(x), net((x * 255 - 127) / 128), atol=1e-5, rtol=0)
    assert isinstance(wrapped.net, EfficientNetLite0)


def test_class_table_builder(tmp_path):
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("".join(f"n0000000{1 + i % 2}\tclass{i}\n" for i in range(1000)))  # 500 cats, 500 dogs
    data_noun = tmp_path / "data.noun"
    # a 4-synset hierarchy in WordNet's data.noun format: 1 and 2 under 0, 0 under root 9
    data_noun.write_text(
        "  licence header line\n"
        "00000009 03 n 01 root 0 000 | root\n"
        "00000000 03 n 01 animal 0 001 @ 00000009 n 0000 | a\n"
        "00000001 03 n 01 cat 0 001 @ 00000000 n 0000 | b\n"
        "00000002 03 n 01 dog 0 001 @i 00000000 n 0000 | c\n")
    (tmp_path / "LICENSE").write_text("WordNet licence text\n")
    out = tmp_path / "table.tsv"
    class_table.build_class_table(synsets, data_noun, out, levels=(400, 1000))
    rows = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("#")]
    assert rows[0] == ["index", "wnid", "name", "wordnet_le400", "wordnet_le1000"]
    # le400: no ancestor has <= 400 classes below it, so each class stays itself; le1000: the root
    assert rows[1] == ["0", "n00000001", "class0", "n00000001:cat", "n00000009:root"]
    assert rows[2] == ["1", "n00000002", "class1", "n00000002:dog", "n00000009:root"]
    assert "WordNet licence text" in out.read_text()
    with pytest.raises(ValueError, match="1000"):
        synsets.write_text("n00000001\tx\n")
        class_table.build_class_table(synsets, data_noun, out)


def test_export_noise_inputs_match_manifest():
    manifest = read_manifest(MANIFEST)
    net = EfficientNetLite0(pretrained=False)
    assert [s["channels"] for s in manifest["noise_inputs"]] == export_module.noise_channels(net)
    module = export_module.CamExportModule(net).eval()
    x = torch.randn(1, 3, 64, 64)
    zeros = [torch.zeros(1, s["channels"], 64 // s["stride"], 64 // s["stride"]) for s in manifest["noise_inputs"]]
    with torch.no_grad():
        logits, _ = module(x, *zeros)
        np.testing.assert_allclose(logits.numpy(), net(x).numpy(), atol=1e-5)
