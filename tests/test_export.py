"""The export command reproduces the shipped model files; the torch EfficientNet-Lite0 is size-independent."""
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("onnx")

from semantic_jpeg.onnx_models import read_manifest  # noqa: E402
from semantic_jpeg.onnx_models.cam_model import PACKAGE_DIR  # noqa: E402
from semantic_jpeg.training import export as export_module  # noqa: E402
from semantic_jpeg.training.efficientnet import (EfficientNetLite0, TFSameConv2d,  # noqa: E402
                                                 efficientnet_lite0, pretrained_weights_path)

MANIFEST = PACKAGE_DIR / f"{export_module.MODEL_STEM}.json"


def test_export_reproduces_shipped_files(tmp_path):
    shipped = read_manifest(MANIFEST)
    if shipped["producer"]["torch"] != torch.__version__:
        pytest.skip(f"shipped files were exported with torch {shipped['producer']['torch']}")
    shutil.copy(PACKAGE_DIR / export_module.CLASS_TABLE, tmp_path / export_module.CLASS_TABLE)
    assert export_module.main(["--out", str(tmp_path)]) == 0
    produced = read_manifest(tmp_path / MANIFEST.name)
    assert produced == shipped
    assert (tmp_path / MANIFEST.name).read_bytes() == MANIFEST.read_bytes()


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
    export_module.build_class_table(synsets, data_noun, out, levels=(400, 1000))
    rows = [line.split("\t") for line in out.read_text().splitlines() if not line.startswith("#")]
    assert rows[0] == ["index", "wnid", "name", "wordnet_le400", "wordnet_le1000"]
    # le400: no ancestor has <= 400 classes below it, so each class stays itself; le1000: the root
    assert rows[1] == ["0", "n00000001", "class0", "n00000001:cat", "n00000009:root"]
    assert rows[2] == ["1", "n00000002", "class1", "n00000002:dog", "n00000009:root"]
    assert "WordNet licence text" in out.read_text()
    with pytest.raises(ValueError, match="1000"):
        synsets.write_text("n00000001\tx\n")
        export_module.build_class_table(synsets, data_noun, out)


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
