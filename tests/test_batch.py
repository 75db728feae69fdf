"""semantic_jpeg.encode_many: parallel batch encoding with bounded memory and job-independent bytes."""
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import semantic_jpeg
from semantic_jpeg.codec.batch import BatchError, WorkerPool, default_jobs

data = pytest.importorskip("skimage.data")
pytest.importorskip("onnxruntime")


def _images(n, size=(80, 112)):
    names = ("astronaut", "chelsea", "coffee", "rocket")
    return [np.ascontiguousarray(getattr(data, names[i % 4])()[8 * (i // 4):8 * (i // 4) + size[0] * 2:2,
                                                                 :size[1] * 2:2]) for i in range(n)]


def test_default_jobs_counts_the_cpus_this_process_may_use():
    import os
    assert default_jobs() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("jobs", [1, 2])
def test_same_bytes_as_encode_in_input_order(jobs):
    images = _images(5)
    options = {"quality": 80, "subsampling": "4:4:4"}
    results = list(semantic_jpeg.encode_many(iter(images), jobs=jobs, **options))
    assert [r.width for r in results] == [112] * 5
    for image, result in zip(images, results):  # same machine, same code: identical files whatever jobs is
        assert result.data == semantic_jpeg.encode(image, **options)


def test_as_completed_yields_every_index_once():
    images = _images(4)
    got = dict(semantic_jpeg.encode_many(images, jobs=2, ordered=False))
    assert sorted(got) == [0, 1, 2, 3]
    assert got[2].data == semantic_jpeg.encode(images[2])


def test_paths_and_encoded_bytes_are_decoded_in_the_workers(tmp_path):
    image = _images(1)[0]
    Image.fromarray(image).save(tmp_path / "a.png")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    a, b = semantic_jpeg.encode_many([tmp_path / "a.png", buffer.getvalue()], jobs=2)
    assert a.data == b.data == semantic_jpeg.encode(image)


def test_input_is_consumed_lazily_with_bounded_in_flight_images():
    pulled = []

    def source():
        for i, image in enumerate(_images(6)):
            pulled.append(i)
            yield image

    results = semantic_jpeg.encode_many(source(), jobs=2, max_in_flight=2)
    next(results)
    assert len(pulled) <= 2  # a generator of a million images is never materialised
    assert len(list(results)) == 5


def test_a_bad_item_fails_alone():
    images = _images(3)
    items = [images[0], np.zeros((10, 10, 4), np.uint8), images[2]]
    out = list(semantic_jpeg.encode_many(items, jobs=2, return_exceptions=True))
    assert isinstance(out[1], BatchError) and out[1].index == 1 and "alpha" in str(out[1])
    assert out[2].data == semantic_jpeg.encode(images[2])
    with pytest.raises(BatchError, match="item 1"):
        list(semantic_jpeg.encode_many(items, jobs=1))


def test_options_are_checked():
    with pytest.raises(TypeError, match="fp"):
        semantic_jpeg.encode_many([], fp="x.jpg")
    with pytest.raises(TypeError, match="iterable"):
        semantic_jpeg.encode_many("a.png")
    with pytest.raises(ValueError, match="jobs"):
        semantic_jpeg.encode_many([], jobs=0)


def _die(item):
    import os
    if item == 1:
        os._exit(3)  # a worker killed (out of memory, a crash): its item fails, the pool restarts
    return item * 10


def test_a_dead_worker_fails_its_items_and_the_batch_goes_on():
    out = list(WorkerPool(_die, jobs=2, max_in_flight=1).run(range(4)))
    assert [(i, ok) for i, _, _, ok in out] == [(0, True), (1, False), (2, True), (3, True)]
    assert out[3][2] == 30 and "died" in str(out[1][2])


def _threads_after_encode(_):
    from semantic_jpeg.onnx_models import gaze_model
    semantic_jpeg.encode(_images(1)[0])  # the default map: loads the default model in this worker
    return gaze_model.default_gaze_model().session.get_session_options().intra_op_num_threads


def test_workers_run_the_default_model_with_one_onnxruntime_thread():
    out = list(WorkerPool(_threads_after_encode, jobs=2).run(range(2)))
    assert [value for _, _, value, ok in out] == [1, 1], out


def test_a_finished_pool_leaves_no_thread_so_the_next_batch_forks_again():
    # a live executor thread made every later batch of the process start its workers through a forkserver
    code = ("import threading\n"
            "from semantic_jpeg.codec.batch import WorkerPool, _context\n"
            "for _ in range(3):\n"
            "    assert _context().get_start_method() == 'fork', threading.enumerate()\n"
            "    assert [v for _, _, v, _ in WorkerPool(abs, jobs=2).run([-1, -2, -3])] == [1, 2, 3]\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_encode_many_refuses_a_single_image():
    """Iterating one array would encode each of its rows as an image: refused, like a single path."""
    image = np.zeros((48, 64, 3), np.uint8)
    for single in (image, Image.fromarray(image), "photo.png", b"bytes"):
        with pytest.raises(TypeError, match="single"):
            semantic_jpeg.encode_many(single, jobs=1)


_OWNER_SCRIPT = """
import sys, numpy as np, semantic_jpeg
if sys.argv[1] == "forkserver":
    semantic_jpeg.saliency_map(np.zeros((32, 32, 3), np.uint8))  # onnxruntime running: workers via a forkserver
images = [np.random.default_rng(i).integers(0, 256, (96, 128, 3), np.uint8) for i in range(400)]
for _ in semantic_jpeg.encode_many(images, jobs=2):
    print("encoded", flush=True)
"""


def _descendants(pid):
    """Processes below ``pid`` (from /proc: parent links)."""
    import os

    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_workers_exit_when_the_process_that_started_them_is_killed(start):
    """SIGKILL (or SIGTERM from a scheduler) of the owner must not leave workers waiting on their pipes forever."""
    import os
    import signal
    import time

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc")
    owner = subprocess.Popen([sys.executable, "-c", _OWNER_SCRIPT, start], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "encoded"  # the workers are running
        workers = _descendants(owner.pid)
        assert len(workers) >= 2
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
            time.sleep(0.2)
        left = [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert not left, f"{len(left)} of the {len(workers)} worker processes outlived their owner"
    finally:
        owner.kill()


def test_workers_take_the_owners_decompression_bomb_limit_and_return_their_warnings(tmp_path):
    """With a forkserver (onnxruntime already running here), workers would have Pillow's default limit, and a
    worker's warnings would only reach its stderr."""
    code = f"""
import warnings, numpy as np, semantic_jpeg
from PIL import Image
from semantic_jpeg.codec import RateControlWarning
semantic_jpeg.saliency_map(np.zeros((32, 32, 3), np.uint8))
if __name__ == "__main__":
    path = {str(tmp_path / "a.png")!r}
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(path)
    Image.MAX_IMAGE_PIXELS = 1000  # 3072 pixels is over twice the limit: refused
    result = list(semantic_jpeg.encode_many([path], jobs=2, return_exceptions=True))[0]
    assert type(result.cause).__name__ == "DecompressionBombError", result
    Image.MAX_IMAGE_PIXELS = None
    assert list(semantic_jpeg.encode_many([path], jobs=2))[0].width == 64  # and no limit: accepted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(semantic_jpeg.encode_many([np.zeros((48, 64, 3), np.uint8)] * 2, jobs=2))  # target out of reach
    assert sum(issubclass(w.category, RateControlWarning) for w in caught) == 2, caught
"""
    script = tmp_path / "check.py"
    script.write_text(code)
    subprocess.run([sys.executable, str(script)], check=True, timeout=300)
