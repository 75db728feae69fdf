"""semantic_jpeg.ray: the Ray Data callables, and the documented folder example on a local 2-CPU Ray."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray.data")
pytest.importorskip("onnxruntime")
data = pytest.importorskip("skimage.data")

import semantic_jpeg  # noqa: E402
from semantic_jpeg.ray import PurifyTransform, SaliencyMapper, SemanticJpegEncoder, row_seed, write_jpegs  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "scaling.md"


def _batch():
    images = np.stack([data.astronaut()[:96, :128], data.chelsea()[:96, :128], data.coffee()[:96, :128]])
    return {"image": images, "path": np.array(["a.png", "b.png", "c.png"], dtype=object)}


def test_encoder_adds_jpeg_and_summary_columns_with_the_bytes_of_encode():
    batch = _batch()
    out = SemanticJpegEncoder(quality=80)(batch)
    assert "image" not in out and list(out["path"]) == ["a.png", "b.png", "c.png"]
    for image, jpeg, size in zip(batch["image"], out["jpeg"], out["jpeg_size"]):
        assert jpeg == semantic_jpeg.encode(image, quality=80) and size == len(jpeg)
    assert list(out["width"]) == [128] * 3 and np.isfinite(out["final_quality"]).all()


def test_maps_made_upstream_are_the_default_map_and_encode_as_given():
    """The GPU layout on the CPU: SaliencyMapper adds batched maps (the default map, to float rounding), and the
    encoder takes them from the column (the bytes of encode with that map)."""
    batch = _batch()
    batch["image"] = np.array(list(batch["image"]) + [data.camera()[:80, :120, None].repeat(3, 2)], dtype=object)
    batch["path"] = np.array(list(batch["path"]) + ["d.png"], dtype=object)
    mapper = SaliencyMapper(model_batch_size=2, intra_op_num_threads=1)
    assert mapper.providers == ["CPUExecutionProvider"]
    mapped = mapper(batch)
    for image, saliency in zip(batch["image"], mapped["saliency"]):
        np.testing.assert_allclose(saliency, semantic_jpeg.saliency_map(image), rtol=0, atol=1e-6)
    out = SemanticJpegEncoder(saliency_column="saliency", quality=80)(mapped)
    assert "saliency" not in out and "image" not in out
    for image, saliency, jpeg in zip(batch["image"], mapped["saliency"], out["jpeg"]):
        assert jpeg == semantic_jpeg.encode(image, saliency=saliency, quality=80)
    with pytest.raises(KeyError, match="SaliencyMapper"):
        SemanticJpegEncoder(saliency_column="saliency")(batch)
    with pytest.raises(ValueError, match="batch_size"):
        SaliencyMapper(model_batch_size=0)
    with pytest.raises(ValueError, match="not both"):
        SemanticJpegEncoder(saliency_column="saliency", saliency=np.ones((4, 4)))


def test_encoder_records_row_errors_when_asked():
    batch = {"image": np.array([np.zeros((8, 8, 4), np.uint8), data.coffee()[:64, :64]], dtype=object)}
    with pytest.raises(ValueError, match="alpha"):
        SemanticJpegEncoder()(batch)
    out = SemanticJpegEncoder(errors="record")(batch)
    assert out["jpeg"][0] == b"" and "alpha" in out["error"][0] and out["error"][1] == ""
    assert Image.open(__import__("io").BytesIO(out["jpeg"][1])).size == (64, 64)


def test_encoder_writes_the_files_itself_when_given_out(tmp_path):
    batch = _batch()
    batch["path"] = np.array([str(tmp_path / "in" / n) for n in ("a.png", "sub/b.png", "c.png")], dtype=object)
    out = SemanticJpegEncoder(quality=80, root=str(tmp_path / "in"), out=str(tmp_path / "out"))(batch)
    assert "jpeg" not in out and "image" not in out
    for image, written, size in zip(batch["image"], out["output"], out["jpeg_size"]):
        assert Path(written).read_bytes() == semantic_jpeg.encode(image, quality=80)
        assert os.path.getsize(written) == size
    assert Path(out["output"][1]) == tmp_path / "out" / "sub" / "b.jpg"
    with pytest.raises(FileExistsError):  # never replaces a file unless asked
        SemanticJpegEncoder(quality=80, root=str(tmp_path / "in"), out=str(tmp_path / "out"))(batch)
    SemanticJpegEncoder(quality=60, root=str(tmp_path / "in"), out=str(tmp_path / "out"), overwrite=True)(batch)
    assert Path(out["output"][0]).read_bytes() == semantic_jpeg.encode(batch["image"][0], quality=60)
    with pytest.raises(ValueError, match="root"):
        SemanticJpegEncoder(out=str(tmp_path / "x"))


def test_a_row_that_failed_is_not_written(tmp_path):
    batch = {"image": np.array([np.zeros((8, 8, 4), np.uint8), data.coffee()[:64, :64]], dtype=object),
             "path": np.array([str(tmp_path / "bad.png"), str(tmp_path / "good.png")], dtype=object)}
    out = SemanticJpegEncoder(errors="record", root=str(tmp_path), out=str(tmp_path / "out"))(batch)
    assert out["output"][0] == "" and "alpha" in out["error"][0]
    assert sorted(os.listdir(tmp_path / "out")) == ["good.jpg"]


def test_purify_rows_do_not_depend_on_batching():
    batch = _batch()
    purify = PurifyTransform("pd+rcam+dwt", seed=3)
    whole = purify(batch)["image"]
    parts = [purify({k: v[i:i + 1] for k, v in batch.items()})["image"][0] for i in range(3)]
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(whole[0], batch["image"][0])  # it did purify
    other = PurifyTransform("pd+rcam+dwt", seed=4)(batch)["image"]
    assert not np.array_equal(other[0], whole[0])  # the seed matters
    assert row_seed(0, "x").integers(1 << 30) == row_seed(0, "x").integers(1 << 30)
    draws = {key: row_seed(0, key).integers(1 << 62) for key in (0, 5, -1, 2 ** 63 - 1, 2 ** 63)}
    assert len(set(draws.values())) == len(draws)  # no two int keys share a stream
    assert row_seed(0, np.int64(5)).integers(1 << 62) == draws[5]


def test_purify_takes_any_filter_and_honours_bgr():
    from semantic_jpeg.defense_filters import Filter, fft_lowpass, gaussian_noise

    batch = _batch()
    assert PurifyTransform(Filter(fft_lowpass))(batch)["image"].shape == batch["image"].shape  # no color_order
    assert PurifyTransform(gaussian_noise)(batch)["image"].shape == batch["image"].shape
    rgb = PurifyTransform("jpeg")(batch)["image"]
    bgr = PurifyTransform("jpeg", color_order="BGR")({**batch, "image": batch["image"][..., ::-1].copy()})["image"]
    np.testing.assert_array_equal(bgr[..., ::-1], rgb)
    with pytest.raises(ValueError, match="rows"):
        PurifyTransform("jpeg")({**batch, "path": batch["path"][:1]})
    with pytest.raises(TypeError, match="qualty"):
        PurifyTransform("jpeg", qualty=3)
    for seed in (-1, 1.7, True):
        with pytest.raises(ValueError, match="seed"):
            PurifyTransform("jpeg", seed=seed)


def test_documented_example_encodes_a_folder_on_local_ray(tmp_path):
    """The docs/scaling.md example, as written, in a fresh process with ray.init(num_cpus=2)."""
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"<!-- example: ray-encode-folder -->\n```python\n(.*?)```", text, re.S).group(1)
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    arrays = {"a.png": data.astronaut()[:120, :160], "b.jpg": data.chelsea()[:100, :150],
              "sub/c.png": data.coffee()[:90, :140]}
    for name, array in arrays.items():
        Image.fromarray(array).save(photos / name)
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in arrays:
        written = (tmp_path / "encoded" / name).with_suffix(".jpg")
        decoded_input = np.asarray(Image.open(photos / name).convert("RGB"))
        assert written.read_bytes() == semantic_jpeg.encode(decoded_input, quality=80)
        assert f"{written} " in done.stdout


TWO_STAGE = r"""
import os, sys
import ray
from semantic_jpeg.ray import SaliencyMapper, SemanticJpegEncoder

src, dst = os.path.abspath("photos"), os.path.abspath("encoded")
ray.init(num_cpus=2, num_gpus=0, include_dashboard=False)
ds = ray.data.read_images(src, mode="RGB", include_paths=True, num_cpus=0.25, override_num_blocks=2)
ds = ds.map_batches(SaliencyMapper, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5, batch_size=4,
                    fn_constructor_kwargs={"model_batch_size": 1, "intra_op_num_threads": 1})
ds = ds.map_batches(SemanticJpegEncoder, fn_constructor_kwargs={"quality": 80, "root": src, "out": dst,
                                                                "saliency_column": "saliency"},
                    compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.5, batch_size=2)
for row in ds.select_columns(["output"]).take_all():
    print(row["output"])
"""


def test_two_stage_pipeline_with_a_map_actor_on_local_ray(tmp_path):
    """docs/scaling.md's GPU layout, on CPUs: the maps travel through Ray's blocks to the encoders intact (one
    image per onnxruntime call, so the files are those of encode with the default map on any CPU)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    arrays = {"a.png": data.astronaut()[:120, :160], "b.png": data.chelsea()[:120, :160],
              "c.png": data.coffee()[:90, :140]}
    for name, array in arrays.items():
        Image.fromarray(array).save(photos / name)
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    done = subprocess.run([sys.executable, "-c", TWO_STAGE], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for name, array in arrays.items():
        written = (tmp_path / "encoded" / name).with_suffix(".jpg")
        assert written.read_bytes() == semantic_jpeg.encode(array, quality=80)


def test_write_jpegs_never_replaces_an_input_or_writes_two_rows_to_one_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jpg").write_bytes(b"an input")
    batch = {"path": np.array(["in/a.png"], dtype=object), "jpeg": np.array([b"new"], dtype=object)}
    for overwrite in (False, True):  # out == root: in/a.jpg is another row's input
        with pytest.raises(ValueError, match="may be an input"):
            write_jpegs(batch, root="in", out="in", overwrite=overwrite)
    assert (tmp_path / "in" / "a.jpg").read_bytes() == b"an input"
    two = {"path": np.array(["in/a.png", "in/a.jpg"], dtype=object), "jpeg": np.array([b"1", b"2"], dtype=object)}
    with pytest.raises(ValueError, match="both be written"):
        write_jpegs(two, root="in", out="out", overwrite=True)
    assert not (tmp_path / "out").exists()  # refused before any write
    done = write_jpegs(batch, root="in", out="out")  # a relative path is relative to the working folder
    assert list(done["output"]) == [os.path.join("out", "a.jpg")]
    assert (tmp_path / "out" / "a.jpg").read_bytes() == b"new"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_jpegs(batch, root="in", out="out")


def test_encoder_reads_mixed_greyscale_rows_and_refuses_malformed_batches():
    rgb, grey = data.astronaut()[:48, :64], data.camera()[:48, :64]
    # Ray stores a greyscale row of a block that also holds colour images as 1 x H x W
    out = SemanticJpegEncoder(quality=80)({"image": np.array([rgb, grey[None]], dtype=object)})
    assert list(out["jpeg"]) == [semantic_jpeg.encode(rgb, quality=80), semantic_jpeg.encode(grey, quality=80)]
    with pytest.raises(ValueError, match="ONE"):  # a single image is not a batch of 48 greyscale rows
        SemanticJpegEncoder(quality=80)({"image": rgb})
    maps = np.array([np.ones((48, 64), np.float32)], dtype=object)
    with pytest.raises(ValueError, match="rows"):
        SemanticJpegEncoder(saliency_column="saliency")({"image": np.stack([rgb, rgb]), "saliency": maps})
    pa = pytest.importorskip("pyarrow")
    with pytest.raises(TypeError, match="batch_format"):
        SemanticJpegEncoder(quality=80)(pa.table({"image": [1]}))


def test_written_batches_refuse_before_writing_record_per_row_and_resume(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    (dst / "sub").mkdir(parents=True)
    (dst / "sub" / "b.jpg").write_bytes(b"OLD")
    image = data.astronaut()[:48, :64]
    batch = {"image": np.stack([image] * 3),
             "path": np.array([str(src / "a.png"), str(src / "sub" / "b.png"), str(src / "c.png")], dtype=object)}
    with pytest.raises(FileExistsError, match="skip_existing"):
        SemanticJpegEncoder(quality=80, root=str(src), out=str(dst))(batch)
    assert not (dst / "a.jpg").exists()  # refused before any file of the batch was written
    out = SemanticJpegEncoder(quality=80, root=str(src), out=str(dst), errors="record")(batch)
    assert list(out["output"]) == [str(dst / "a.jpg"), "", str(dst / "c.jpg")]
    assert "exists" in out["error"][1] and out["error"][0] == "" and (dst / "sub" / "b.jpg").read_bytes() == b"OLD"
    (dst / "c.jpg").unlink()
    out = SemanticJpegEncoder(quality=80, root=str(src), out=str(dst), skip_existing=True)(batch)
    assert list(out["output"]) == [str(dst / "a.jpg"), str(dst / "sub" / "b.jpg"), str(dst / "c.jpg")]
    assert list(out["jpeg_size"]) == [0, 0, (dst / "c.jpg").stat().st_size]  # only c was encoded again
    assert (dst / "sub" / "b.jpg").read_bytes() == b"OLD"
