"""The ``semantic-jpeg`` command line as a whole: every option of every subcommand explains itself."""
import argparse

import pytest

from semantic_jpeg.cli import build_parser


def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


PARSERS = dict(_parsers(build_parser()))


@pytest.mark.parametrize("path", [p for p in PARSERS if p], ids=" ".join)
def test_every_option_has_help_that_states_its_default(path):
    parser = PARSERS[path]
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[-1]
        assert action.help and action.help.strip(), f"semantic-jpeg {' '.join(path)} {name}: no help text"
        if action.default is not None and action.default is not False:
            shown = parser._get_formatter()._get_help_string(action)
            assert "default" in shown, f"semantic-jpeg {' '.join(path)} {name}: default {action.default!r} not shown"
    assert "(default: None)" not in text and "(default: False)" not in text


def test_help_shows_the_real_default_value():
    text = " ".join(PARSERS[("evaluate",)].format_help().split())
    assert "--draws DRAWS draws of stochastic defenses for Ens-k (default: 10)" in text
    assert "images for the ablations (0: skip) (default: 20)" in text
    assert "against the L-inf budget (0: skip) (default: 0)" in text  # 0 == False, yet 0 is a default to show


# ----- the CLI never loses a file (encode, maps, predict, train, export, evaluate)
import io  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import semantic_jpeg  # noqa: E402
from semantic_jpeg.cli import main  # noqa: E402

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("onnxruntime")


def _photo(seed=0, size=(96, 128)):
    """A small natural image (scikit-image's samples, cropped) so the tests need no data folder."""
    names = ("astronaut", "chelsea", "coffee", "rocket")
    rgb = getattr(skimage_data, names[seed % 4])()
    top = 8 * (seed // 4)
    return Image.fromarray(rgb[top:top + size[0] * 2:2, :size[1] * 2:2])


def run(*argv):
    """main() as the console script runs it: a SystemExit message is printed to stderr with status 1."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            return 1
        raise


def _no_traceback(err):
    assert "Traceback" not in err, err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        run("--version")
    assert exit_.value.code == 0
    import semantic_jpeg
    assert capsys.readouterr().out.strip() == f"semantic-jpeg {semantic_jpeg.__version__}"


def test_encode_never_writes_over_its_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _photo().save("a.jpg", quality=95)
    before = Path("a.jpg").read_bytes()
    assert run("encode", "a.jpg", "-o", ".") == 2
    assert run("encode", "a.jpg", "-o", "a.jpg", "--overwrite") == 2
    assert run("encode", "a.jpg", "-o", "./sub/../a.jpg", "--overwrite") == 2
    assert Path("a.jpg").read_bytes() == before
    err = capsys.readouterr().err
    assert "is an input" in err
    _no_traceback(err)


def test_encode_refuses_existing_outputs_unless_overwrite(tmp_path, capsys):
    _photo().save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.jpg").write_bytes(b"keep me")
    assert run("encode", tmp_path / "a.png", "-o", tmp_path / "out") == 2
    assert (tmp_path / "out" / "a.jpg").read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert run("encode", tmp_path / "a.png", "-o", tmp_path / "out", "--overwrite", "--jobs", 1) == 0
    assert Image.open(tmp_path / "out" / "a.jpg").format == "JPEG"
    out = capsys.readouterr().out  # the input's own size is reported, not the output's
    assert f"(input {(tmp_path / 'a.png').stat().st_size} B)" in out


def test_encode_detects_name_collisions_before_any_work(tmp_path, capsys):
    _photo(0).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    _photo(1).save(tmp_path / "sub" / "a.jpg")
    assert run("encode", tmp_path / "a.png", tmp_path / "sub" / "a.jpg", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "same output file" in err and "a.png" in err and "a.jpg" in err
    assert not (tmp_path / "out").exists()  # nothing done, not even the folder


def test_encode_output_folder_that_is_a_file(tmp_path, capsys):
    for i in range(2):
        _photo(i).save(tmp_path / f"{i}.png")
    (tmp_path / "out").write_bytes(b"a file")
    assert run("encode", tmp_path / "0.png", tmp_path / "1.png", "-o", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "existing file" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "out").read_bytes() == b"a file"


@pytest.mark.parametrize("jobs", [1, 2])
def test_encode_reports_bad_inputs_and_goes_on(tmp_path, capsys, jobs):
    good = [tmp_path / "good0.png", tmp_path / "good1.png"]
    for i, path in enumerate(good):
        _photo(i).save(path)
    Image.new("CMYK", (64, 64)).save(tmp_path / "cmyk.jpg")
    (tmp_path / "text.png").write_text("not an image")
    _photo().save(tmp_path / "cut.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "cut.png").read_bytes()[:300])
    bad = [tmp_path / "missing.png", tmp_path / "cmyk.jpg", tmp_path / "text.png", tmp_path / "cut.png"]
    out = tmp_path / "out"
    assert run("encode", good[0], *bad, good[1], "-o", out, "--jobs", jobs) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "4 of 6 input(s) failed, 2 written:" in err
    summary = err.split("4 of 6 input(s) failed, 2 written:")[1]  # collected again at the end
    for path in bad:
        assert str(path) in err and f"  {path}: " in summary
    assert sorted(p.name for p in out.iterdir()) == ["good0.jpg", "good1.jpg"]  # no partial files
    for name in ("good0.jpg", "good1.jpg"):
        Image.open(out / name).load()


def test_encode_decompression_bomb_is_one_line(tmp_path, capsys, monkeypatch):
    _photo().save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2x this is refused by Pillow at open
    assert run("encode", tmp_path / "big.png", "-o", tmp_path / "big.jpg", "--jobs", 1) == 1
    err = capsys.readouterr().err
    _no_traceback(err)
    assert "DecompressionBombError" in err and not (tmp_path / "big.jpg").exists()


def test_encode_folder_inputs_recursive_and_stale_temp_files(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    _photo(0).save(src / "a.png")
    _photo(1).save(src / "sub" / "a.png")  # same name in a sub-folder: kept apart by the mirrored tree
    (src / ".a.jpg.0123456789abcdef.tmp").write_bytes(_photo(2).tobytes()[:100])  # left by a killed process
    _photo(3).save(src / ".hidden.png")
    (src / "notes.txt").write_text("x")
    assert run("encode", src, "-o", tmp_path / "flat", "--jobs", 1) == 0
    assert sorted(os.listdir(tmp_path / "flat")) == ["a.jpg"]
    assert run("encode", src, "-r", "-o", tmp_path / "tree") == 0
    files = sorted(str(p.relative_to(tmp_path / "tree")) for p in (tmp_path / "tree").rglob("*") if p.is_file())
    assert files == ["a.jpg", os.path.join("sub", "a.jpg")]
    assert run("encode", tmp_path / "tree", "-r", "-o", tmp_path / "again") == 0  # outputs as inputs: fine
    assert not list(tmp_path.rglob("*.tmp"))[1:]  # only the planted one


def test_encode_from_file_list(tmp_path):
    for i in range(3):
        _photo(i).save(tmp_path / f"{i}.png")
    (tmp_path / "list.txt").write_text("".join(f"{tmp_path / f'{i}.png'}\n" for i in range(3)) + "\n")
    assert run("encode", "--from-file", tmp_path / "list.txt", "-o", tmp_path / "out", "--jobs", 1) == 0
    assert sorted(os.listdir(tmp_path / "out")) == ["0.jpg", "1.jpg", "2.jpg"]


def test_encode_output_bytes_do_not_depend_on_jobs(tmp_path):
    for i in range(4):
        _photo(i).save(tmp_path / f"{i}.png")
    inputs = [tmp_path / f"{i}.png" for i in range(4)]
    assert run("encode", *inputs, "-o", tmp_path / "one", "--jobs", 1) == 0
    assert run("encode", *inputs, "-o", tmp_path / "two", "--jobs", 2) == 0
    for i in range(4):  # same machine, same code path: the files must be identical
        assert (tmp_path / "one" / f"{i}.jpg").read_bytes() == (tmp_path / "two" / f"{i}.jpg").read_bytes()


def _cli(*argv, **kwargs):
    return subprocess.run([sys.executable, "-m", "semantic_jpeg.cli", *map(str, argv)], capture_output=True,
                          **kwargs)


def test_encode_stdin_to_stdout(tmp_path):
    buffer = io.BytesIO()
    _photo().save(buffer, "PNG")
    done = _cli("encode", "-", "-o", "-", input=buffer.getvalue())
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout[:2] == b"\xff\xd8" and Image.open(io.BytesIO(done.stdout)).size == (128, 96)
    assert b"<stdin> -> <stdout>" in done.stderr  # the summary goes to stderr, stdout holds only the JPEG
    _photo(1).save(tmp_path / "b.png")
    done = _cli("encode", tmp_path / "b.png", tmp_path / "b.png", "-o", "-")
    assert done.returncode == 2 and b"standard output" in done.stderr


def test_write_file_removes_its_temp_file_when_interrupted(tmp_path, monkeypatch):
    from semantic_jpeg import _cliutil

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cliutil.os, "link", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _cliutil.write_file(str(tmp_path / "x.jpg"), b"data")
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    _cliutil.write_file(str(tmp_path / "x.jpg"), b"data")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _cliutil.write_file(str(tmp_path / "x.jpg"), b"other")
    assert (tmp_path / "x.jpg").read_bytes() == b"data" and os.listdir(tmp_path) == ["x.jpg"]


def test_encode_ctrl_c_keeps_finished_files_and_prints_a_summary(tmp_path):
    """A real SIGINT to a running two-worker batch: exit 130, no traceback from the parent or the workers,
    every file written is a complete JPEG, no temporary file left."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(60):
        _photo(i, size=(192, 256)).save(src / f"{i:02d}.png")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "semantic_jpeg.cli", "encode", str(src), "-o", str(out),
                                "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and len(os.listdir(out)) >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    stderr = stderr.decode()
    _no_traceback(stderr)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "written and kept" in stderr
    written = sorted(os.listdir(out))
    assert written and all(name.endswith(".jpg") for name in written), written  # no .tmp left behind
    assert len(written) < 60
    for name in written:
        Image.open(out / name).load()


# ----- one clean line, never a traceback, in every subcommand
@pytest.fixture
def bad_inputs(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    return tmp_path


@pytest.mark.parametrize("argv", [
    ("maps", "{t}/missing.png", "-o", "{t}/m"),
    ("maps", "{t}/folder", "-o", "{t}/m"),
    ("maps", "{t}/file", "-o", "{t}/m"),
    ("predict", "{t}/missing.png"),
    ("predict", "{t}/folder"),
    ("maps", "--model", "{t}/missing.json", "{t}/file", "-o", "{t}/m"),
    ("train", "msroi", "--data", "{t}/missing", "--out", "{t}/run"),
    ("train", "msroi", "--data", "{t}/file", "--out", "{t}/run"),
    ("train", "repr", "--data", "{t}/folder", "--out", "{t}/run"),
    ("export", "--out", "{t}/file"),
    ("evaluate", "--data", "{t}/missing", "--out", "{t}/e"),
    ("evaluate", "--data", "{t}/folder", "--out", "{t}/file"),
], ids=lambda a: " ".join(a[:2]))
def test_every_subcommand_reports_file_errors_in_one_line(bad_inputs, capsys, argv):
    if argv[0] in ("train", "export", "evaluate"):
        pytest.importorskip("torch")
    code = run(*[a.format(t=bad_inputs) for a in argv])
    err = capsys.readouterr().err
    _no_traceback(err)
    assert code not in (0, None)
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, err  # the problem (and for maps/predict the count)


def test_maps_refuses_collisions_and_existing_outputs(tmp_path, capsys):
    _photo(0).save(tmp_path / "a.png")
    (tmp_path / "b").mkdir()
    _photo(1).save(tmp_path / "b" / "a.jpg")
    assert run("maps", tmp_path / "a.png", tmp_path / "b" / "a.jpg", "-o", tmp_path / "m") == 2
    assert "both be written" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert run("maps", tmp_path / "a.png", "-o", tmp_path / "m") == 0
    png = (tmp_path / "m" / "a_msroi.png").read_bytes()
    assert run("maps", tmp_path / "a.png", "-o", tmp_path / "m") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run("maps", tmp_path / "a.png", "-o", tmp_path / "m", "--overwrite") == 0
    assert (tmp_path / "m" / "a_msroi.png").read_bytes() == png


# ----- paths and defaults
def test_train_msroi_with_relative_out_exports_and_resumes(tmp_path, monkeypatch):
    """The README's `train msroi --data tdata --out runs/msroi`: relative paths from the working directory."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        Path("tdata", name).mkdir(parents=True)
        for i in range(4):
            noise = rng.integers(0, 40, (64, 64, 3))
            Image.fromarray((noise + np.array(colour) // 2).astype(np.uint8)).save(f"tdata/{name}/{i}.png")
    common = ("train", "msroi", "--data", "tdata", "--out", "runs/msroi", "--size", "64", "--batch-size", "4",
              "--no-progress")
    assert run(*common, "--epochs", "1") == 0
    assert run(*common, "--epochs", "2", "--resume") == 0
    from semantic_jpeg.onnx_models import load_model
    model = load_model(Path("runs/msroi/msroi_net.json"))
    assert model.class_names == ["blue", "red"]
    assert not Path("runs/msroi/runs").exists()


def test_export_and_evaluate_need_explicit_paths():
    """No default that writes into the installed package, the committed results or the repository."""
    export = PARSERS[("export",)]
    assert next(a for a in export._actions if a.dest == "out").required
    evaluate = PARSERS[("evaluate",)]
    actions = {a.dest: a for a in evaluate._actions}
    assert actions["data"].required and actions["out"].required
    args = evaluate.parse_args(["--data", "d", "--out", "o"])
    assert args.cache is None  # the user cache folder, resolved when the command runs
    from semantic_jpeg.evaluation.cli import user_cache_dir
    repo = Path(__file__).resolve().parents[1]
    assert not Path(user_cache_dir()).resolve().is_relative_to(repo)
    assert args.threads == 1  # one torch thread cannot oversubscribe a shared CPU


def test_docs_cli_md_lists_every_subcommand_and_option():
    """docs/cli.md's reference is generated (semantic_jpeg.cli.update_reference); it must name every subcommand
    and option of the parser, and no option the parser does not have."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    from semantic_jpeg.cli import REFERENCE_END, REFERENCE_START
    generated = doc.split(REFERENCE_START, 1)[1].split(REFERENCE_END, 1)[0]
    known = set()
    for path, parser in PARSERS.items():
        assert f"### `{' '.join(('semantic-jpeg',) + path)}`" in generated, f"{path} missing: run update_reference"
        for action in parser._actions:
            for option in action.option_strings:
                known.add(option)
                section = generated.split(f"### `{' '.join(('semantic-jpeg',) + path)}`", 1)[1].split("### `")[0]
                assert option in section, f"semantic-jpeg {' '.join(path)} {option} missing: run update_reference"
    import re
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", generated))
    assert mentioned <= known, f"docs/cli.md names options that do not exist: {sorted(mentioned - known)}"


def test_encode_skip_existing_resumes_a_batch(tmp_path, capsys):
    for i in range(2):
        _photo(i).save(tmp_path / f"{i}.png")
    assert run("encode", tmp_path / "0.png", "-o", f"{tmp_path / 'out'}/", "--jobs", 1) == 0  # trailing /: a folder
    (tmp_path / "out" / "0.jpg").write_bytes(b"kept")
    assert run("encode", tmp_path / "0.png", tmp_path / "1.png", "-o", tmp_path / "out", "--skip-existing",
               "--jobs", 1) == 0
    assert (tmp_path / "out" / "0.jpg").read_bytes() == b"kept"
    Image.open(tmp_path / "out" / "1.jpg").load()
    assert "skipping 1 input(s)" in capsys.readouterr().err


def test_encode_reports_in_input_order_with_several_workers(tmp_path, capsys):
    names = [f"{i}.png" for i in (3, 0, 2, 1, 4)]
    for i, name in enumerate(names):
        _photo(i, size=(96 + 32 * (i % 2), 128)).save(tmp_path / name)  # unequal sizes: unequal work
    assert run("encode", *[tmp_path / n for n in names], "-o", tmp_path / "out", "--jobs", 2) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if " -> " in line]
    assert [line.split(" -> ")[0] for line in lines] == [str(tmp_path / n) for n in names]


def test_encode_refuses_level_options_in_rdo_mode_before_any_work(tmp_path, capsys):
    from semantic_jpeg.cli import main

    out = tmp_path / "c.jpg"
    assert main(["encode", "--sample", "chelsea", "--levels", "3", "-o", str(out)]) == 2
    assert "--mode dct or mosaic" in capsys.readouterr().err and not out.exists()


def test_no_rate_control_writes_the_one_pass_encode(tmp_path):
    _photo().save(tmp_path / "p.png")
    assert run("encode", tmp_path / "p.png", "-o", tmp_path / "p.jpg", "--no-rate-control", "--quality", 60) == 0
    rgb = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    expected = semantic_jpeg.encode(rgb, quality=60, rate_control=False)
    assert (tmp_path / "p.jpg").read_bytes() == expected
    assert run("encode", tmp_path / "p.png", "-o", tmp_path / "q.jpg", "--no-rate-control", "--mode", "dct") == 2


def test_encode_missing_input_keeps_the_output_a_folder(tmp_path, capsys):
    """A typo among several inputs must not turn the output folder into a file named like the folder."""
    _photo().save(tmp_path / "a.png")
    assert run("encode", tmp_path / "a.png", tmp_path / "typo.png", "-o", tmp_path / "out", "--jobs", 1) == 1
    assert (tmp_path / "out").is_dir() and Image.open(tmp_path / "out" / "a.jpg").format == "JPEG"
    assert "typo.png: no such file or folder" in capsys.readouterr().err


def test_encode_recursive_output_inside_the_input_folder_resumes(tmp_path, capsys):
    """The output folder is never listed as input, so a resumed run in this layout works."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    _photo(0).save(tree / "a.png")
    _photo(1).save(tree / "sub" / "b.png")
    assert run("encode", tree, "-r", "-o", tree / "enc", "--jobs", 1) == 0
    assert run("encode", tree, "-r", "-o", tree / "enc", "--skip-existing", "--jobs", 1) == 0
    assert sorted(p.relative_to(tree / "enc").as_posix() for p in (tree / "enc").rglob("*.jpg")) == \
        ["a.jpg", "sub/b.jpg"]
    assert "skipping 2 input(s)" in capsys.readouterr().err


def test_encode_folder_input_skips_named_pipes(tmp_path):
    """A FIFO named like an image would block the read forever: folders list regular files only."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes here")
    (tmp_path / "d").mkdir()
    _photo().save(tmp_path / "d" / "a.png")
    os.mkfifo(tmp_path / "d" / "b.png")
    done = subprocess.run([sys.executable, "-m", "semantic_jpeg.cli", "encode", str(tmp_path / "d"), "-o",
                           str(tmp_path / "out"), "--jobs", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a.jpg"]


def test_encode_saliency_map_keeps_16_bit_and_float_maps(tmp_path):
    """Pillow's convert("L") clips 16-bit and float maps to 0..255 (a 0..1 float map became almost all 0): the
    command passes them on scaled as the library takes them."""
    photo = _photo()
    photo.save(tmp_path / "a.png")
    ramp = np.tile(np.linspace(0, 1, photo.width, dtype=np.float32), (photo.height, 1))
    Image.fromarray(np.rint(ramp * 65535).astype(np.uint16)).save(tmp_path / "map16.png")
    Image.fromarray(ramp, mode="F").save(tmp_path / "mapf.tiff")
    assert Image.open(tmp_path / "map16.png").mode.startswith("I")
    expected = semantic_jpeg.encode(photo, saliency=ramp)
    for name in ("map16.png", "mapf.tiff"):
        out = tmp_path / f"{name}.jpg"
        assert run("encode", tmp_path / "a.png", "-o", out, "--saliency-map", tmp_path / name) == 0
        if name == "mapf.tiff":
            assert out.read_bytes() == expected
        else:  # 16-bit rounding of the ramp: the same file or within a few bytes of it
            assert abs(out.stat().st_size - len(expected)) <= 0.01 * len(expected)
    flat = semantic_jpeg.encode(photo, saliency=np.asarray(Image.open(tmp_path / "map16.png").convert("L")))
    assert (tmp_path / "map16.png.jpg").read_bytes() != flat


def test_encode_turns_exif_rotated_photos_upright(tmp_path):
    """A photo stored sideways with EXIF orientation 6 comes out upright (and with the tag reset), so --strip or
    a viewer that ignores the tag shows it the right way up, and the map sees it upright."""
    photo = _photo(size=(48, 64))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(tmp_path / "rot.jpg", quality=95, exif=exif)
    for extra in ((), ("--strip",)):
        out = tmp_path / f"out{len(extra)}.jpg"
        assert run("encode", tmp_path / "rot.jpg", "-o", out, *extra) == 0
        with Image.open(out) as im:
            assert im.size == (48, 64) and im.getexif().get(0x0112, 1) == 1


def test_encode_heatmap_failure_writes_nothing_and_names_the_file(tmp_path, capsys):
    _photo().save(tmp_path / "a.png")
    (tmp_path / "oh" / "a.heatmap.png").mkdir(parents=True)  # a folder where the heatmap goes
    assert run("encode", tmp_path / "a.png", "-o", f"{tmp_path / 'oh'}/", "--heatmap", "--overwrite",
               "--jobs", 1) == 1
    err = capsys.readouterr().err
    assert "a.heatmap.png" in err and ".tmp" not in err and "0 written" in err
    assert not (tmp_path / "oh" / "a.jpg").exists()
