"""`semantic-jpeg train`: a run folder is never replaced or mixed by accident, and bad data or options give one
line naming the problem (tiny synthetic data; no ../shared)."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from semantic_jpeg.cli import main  # noqa: E402


def _error(*argv) -> str:
    """The one-line error of a failing command (SystemExit's message)."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    message = str(exc.value.code)
    assert "Traceback" not in message and len(message.splitlines()) == 1, message
    return message


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    images = (rng.random((24, 8, 8, 3)) * 255).astype(np.uint8)
    labels = (images[..., 0].mean((1, 2)) > 127).astype(np.int64)
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    return tmp_path / "d.npz"


def _repr(npz, out, *extra):
    return ["train", "repr", "--data", npz, "--layers", "1", "--width", "4", "--batch-size", "8", "--standard",
            "--epochs", "1", "--no-progress", "--out", out, *extra]


def test_a_previous_run_is_replaced_only_when_asked(npz, tmp_path):
    out = tmp_path / "run"
    assert main([str(a) for a in _repr(npz, out)]) == 0
    before = (out / "model.pt").read_bytes()
    message = _error(*_repr(npz, out, "--seed", "9"))
    assert message.startswith("semantic-jpeg train repr: error:") and "--overwrite" in message and "--resume" in message
    assert (out / "model.pt").read_bytes() == before
    assert main([str(a) for a in _repr(npz, out, "--seed", "9", "--overwrite")]) == 0
    assert (out / "model.pt").read_bytes() != before
    assert json.loads((out / "run.json").read_text())["seed"] == 9


def test_resume_refuses_other_settings_and_foreign_checkpoints(npz, tmp_path):
    out = tmp_path / "run"
    assert main([str(a) for a in _repr(npz, out)]) == 0
    message = _error(*_repr(npz, out, "--resume", "--width", "8", "--lr", "0.5"))
    assert "--width 8" in message and "--lr 0.5" in message
    assert main([str(a) for a in _repr(npz, out, "--resume", "--epochs", "2")]) == 0  # --epochs may grow
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    (out / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes()[:500])  # truncated
    assert "not a readable checkpoint" in _error(*_repr(npz, out, "--resume", "--epochs", "3"))
    assert "not found" in _error(*_repr(npz, tmp_path / "none", "--resume"))
    assert not (tmp_path / "none").exists()


def test_selective_dropout_never_writes_over_its_input_model(npz, tmp_path):
    model = tmp_path / "model"
    assert main([str(a) for a in _repr(npz, model)]) == 0
    rng = np.random.default_rng(1)
    pairs = tmp_path / "pairs.npz"
    np.savez(pairs, clean=(rng.random((8, 8, 8, 3)) * 255).astype(np.uint8),
             adversarial=(rng.random((8, 8, 8, 3)) * 255).astype(np.uint8), labels=np.zeros(8, np.int64))
    before = (model / "model.pt").read_bytes()
    base = ["train", "selective-dropout", "--model", model, "--pairs", pairs, "--epochs", "1", "--no-progress"]
    assert "input" in _error(*base, "--out", model, "--overwrite")
    assert "input" in _error(*base, "--out", model)
    assert (model / "model.pt").read_bytes() == before
    np.savez(tmp_path / "big.npz", clean=np.zeros((2, 16, 16, 3), np.uint8), adversarial=np.zeros((2, 16, 16, 3),
             np.uint8), labels=np.zeros(2, np.int64))
    assert "8x8" in _error(*base[:5], tmp_path / "big.npz", "--out", tmp_path / "sd")
    assert "lacks ['clean'" in _error(*base[:5], npz, "--out", tmp_path / "sd")
    assert not (tmp_path / "sd").exists()


@pytest.mark.parametrize("labels, words", [
    (np.linspace(0, 0.9, 24), "integer class indices"), (np.arange(24) - 1, "class indices in"),
    (np.zeros((24, 2), np.int64), "one class index per image")])
def test_repr_refuses_labels_that_are_not_class_indices(tmp_path, labels, words):
    np.savez(tmp_path / "bad.npz", images=np.zeros((24, 8, 8, 3), np.uint8), labels=labels)
    assert words in _error(*_repr(tmp_path / "bad.npz", tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_repr_refuses_unreadable_data_and_bad_numbers(npz, tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04garbage")
    assert "not a readable .npz" in _error(*_repr(tmp_path / "junk.npz", tmp_path / "o"))
    np.save(tmp_path / "one.npy", np.zeros(3))
    assert "single array" in _error(*_repr(tmp_path / "one.npy", tmp_path / "o"))
    assert "--lr" in _error(*_repr(npz, tmp_path / "o", "--lr", "nan"))
    assert "--momentum" in _error(*_repr(npz, tmp_path / "o", "--momentum", "nan"))
    repr_run = [a for a in _repr(npz, tmp_path / "o") if a != "--standard"]  # a data-driven metric needs batches
    assert "--metric-batches" in _error(*repr_run, "--metric", "activation", "--metric-batches", "0")
    if not torch.cuda.is_available():
        assert "no usable CUDA GPU" in _error(*_repr(npz, tmp_path / "o", "--device", "cuda"))
    assert "--device" in _error(*_repr(npz, tmp_path / "o", "--device", "foo"))
    (tmp_path / "file").write_text("x")
    assert "must be a folder" in _error(*_repr(npz, tmp_path / "file"))
    assert not (tmp_path / "o").exists()


def test_msroi_and_distill_check_names_sizes_and_label_files(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 * i, np.uint8)).save(data / f"{i}.png")
    (data / "labels.csv").write_text("name,tags\n0.png,a\n1.png,b\n")
    base = ["train", "msroi", "--data", data, "--size", "32", "--epochs", "1", "--no-progress", "--out",
            tmp_path / "out"]
    assert "file,labels" in _error(*base)
    (data / "labels.csv").write_text("file,labels\n0.png,a\n1.png,b\n")
    (data / "2.png").write_text("not an image")
    (data / "labels.csv").write_text("file,labels\n0.png,a\n1.png,b\n2.png,a\n")
    assert "2.png" in _error(*base)
    assert "--name" in _error(*base, "--name", "../escaped")
    assert "--size" in _error("train", "distill", "--data", data, "--size", "33", "--out", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.onnx").exists()


def test_gaze_checks_its_numbers_before_any_work(tmp_path):
    base = ["train", "gaze", "--data-root", tmp_path, "--out", tmp_path / "out", "--no-progress"]
    assert "--limit" in _error(*base, "--limit", "0")
    assert "--blur-sigma" in _error(*base, "--blur-sigma", "inf")
    assert "--val-every" in _error(*base, "--val-every", "0")
    assert "--threads" in _error(*base, "--threads", "-2")
    assert not (tmp_path / "out").exists()


def test_export_and_gaze_export_replace_model_files_only_when_asked(tmp_path, capsys):
    """Checked before any work: the CAM export before loading weights, the gaze export before training."""
    from semantic_jpeg.training import export as export_module
    from semantic_jpeg.training.gaze import MODEL_STEM

    (tmp_path / f"{export_module.MODEL_STEM}.json").write_text("a user's file")
    with pytest.raises(SystemExit) as exc:
        main(["export", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / f"{export_module.MODEL_STEM}.json").read_text() == "a user's file"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / f"{MODEL_STEM}.onnx").write_bytes(b"shipped")
    message = _error("train", "gaze", "--data-root", tmp_path, "--out", tmp_path / "run", "--export", "--model-dir",
                     tmp_path / "models")
    assert "--overwrite" in message and not (tmp_path / "run").exists()


def test_export_class_table_from_garbage_files_is_one_line(tmp_path, capsys):
    (tmp_path / "g.txt").write_text("not wordnet\n")
    assert main(["export", "--out", str(tmp_path / "out"), "--class-table", "--wordnet-data-noun",
                 str(tmp_path / "g.txt"), "--synsets", str(tmp_path / "g.txt")]) == 1
    err = capsys.readouterr().err
    assert "semantic-jpeg export: error:" in err and "g.txt line 1" in err and "Traceback" not in err
