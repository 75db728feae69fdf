"""Pillow integration is opt-in: importing semantic_jpeg adds the SEMJPEG format and changes no existing saver."""
import subprocess
import sys
import textwrap

# A module that saves a JPEG with Pillow and knows nothing of semantic_jpeg, run before and after the import.
SCRIPT = textwrap.dedent("""
    import hashlib, io, sys
    import numpy as np
    from PIL import Image, JpegImagePlugin

    def plain_save():
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
        return buffer.getvalue()

    before_bytes, before_saver = plain_save(), Image.SAVE["JPEG"]
    import semantic_jpeg
    assert Image.SAVE["JPEG"] is before_saver, "import semantic_jpeg replaced Pillow's JPEG saver"
    assert Image.SAVE["JPEG"] is JpegImagePlugin._save
    assert "SEMJPEG" in Image.SAVE and Image.MIME["SEMJPEG"] == "image/jpeg"
    assert plain_save() == before_bytes
    image = Image.new("RGB", (32, 32), "gray")
    # without registration Pillow ignores the unknown option: the output is Pillow's own JPEG
    plain, flagged = io.BytesIO(), io.BytesIO()
    image.save(plain, "JPEG")
    image.save(flagged, "JPEG", semantic=True, saliency=np.ones((32, 32), np.float32))
    assert plain.getvalue() == flagged.getvalue()

    semantic_jpeg.register_pillow_plugin()  # the explicit opt-in
    assert Image.SAVE["JPEG"] is not before_saver
    assert plain_save() == before_bytes  # saves without semantic=True still run Pillow's saver
    semantic, direct = io.BytesIO(), io.BytesIO()
    image.save(semantic, "JPEG", semantic=True, saliency=np.ones((32, 32), np.float32), quality=70)
    semantic_jpeg.encode(image, direct, saliency=np.ones((32, 32), np.float32), quality=70)
    assert semantic.getvalue() == direct.getvalue()
    semantic_jpeg.unregister_pillow_plugin()
    assert Image.SAVE["JPEG"] is before_saver
    print("ok")
""")


def test_import_does_not_replace_pillows_jpeg_saver():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


NO_ONNXRUNTIME = textwrap.dedent("""
    import io, sys
    sys.modules["onnxruntime"] = None  # 'import onnxruntime' now raises ImportError, as when it is not installed
    import numpy as np
    from PIL import Image
    import semantic_jpeg
    semantic_jpeg.register_pillow_plugin()
    image = Image.new("RGB", (32, 32), "gray")
    for save in (lambda: image.save(io.BytesIO(), "JPEG", semantic=True),
                 lambda: image.save(io.BytesIO(), "SEMJPEG"),
                 lambda: semantic_jpeg.encode(image)):
        try:
            save()
        except ImportError as exc:
            assert "semantic_jpeg[cpu]" in str(exc) and "onnxruntime" in str(exc), str(exc)
        else:
            raise AssertionError("no ImportError")
    semantic_jpeg.encode(image, saliency=np.ones((32, 32), np.float32))  # an explicit map needs no onnxruntime
    print("ok")
""")


def test_missing_onnxruntime_names_the_extra():
    result = subprocess.run([sys.executable, "-c", NO_ONNXRUNTIME], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
