"""``semantic-jpeg encode``: semantic-encode images from the command line.

Every output path is planned before any work: an output that would replace an input, two inputs that map to one
output, and existing outputs (without ``--overwrite``) stop the command with a message. Images are then decoded,
encoded and written one at a time per worker (memory does not grow with the number of inputs); an input that
fails is reported and skipped, and the exit status is 1 with a count at the end. Ctrl-C keeps the files already
written, removes the file being written and prints what was done (exit status 130)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from .._cliutil import TEMP_NAME, describe_error, error, list_folder, write_file
from .encoder import DEFAULT_MODE, MODES

SAMPLES = ("astronaut", "chelsea", "coffee", "rocket")
ORIENTATION = 0x0112  # the EXIF orientation tag
PROG = "semantic-jpeg encode"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "encode", help="semantic-encode images to JPEG",
        description="Encode images as standard JPEGs whose salient regions keep their detail. Metadata (EXIF, "
                    "ICC profile) of the inputs is kept unless --strip is given; a photo with an EXIF orientation is "
                    "turned upright. Existing files are never "
                    "replaced unless --overwrite is given, and an input is never replaced.")
    p.add_argument("inputs", nargs="*",
                   help="input image files or folders ('-': one image read from standard input)")
    p.add_argument("--sample", choices=SAMPLES, help="encode a sample image bundled with scikit-image")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also encode the images in sub-folders of folder inputs (mirrored in the output folder)")
    p.add_argument("--from-file", metavar="LIST",
                   help="also encode the files or folders listed in this text file, one per line ('-': read the "
                        "list from standard input)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one input), folder (several inputs or a folder input; created if missing; "
                        "a trailing / forces a folder), or '-' to write the JPEG to standard output (one input)")
    exists = p.add_mutually_exclusive_group()
    exists.add_argument("--overwrite", action="store_true",
                        help="replace output files that already exist (an input is never replaced)")
    exists.add_argument("--skip-existing", action="store_true",
                        help="leave inputs whose output already exists alone (to resume an interrupted batch)")
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="worker processes (default: the number of CPUs this process may use); the output bytes "
                        "do not depend on it")
    p.add_argument("--levels", type=int, help="--mode dct/mosaic: saliency levels k (default 5)")
    p.add_argument("--quality-range", type=float, nargs=2, metavar=("QL", "QH"),
                   help="--mode dct/mosaic: quality of the least and most salient level (default 30 70)")
    p.add_argument("--quality", type=float,
                   help="rdo mode (default): the size of a plain Pillow JPEG at this quality, with the bits moved to "
                        "where people look (default 75); dct/mosaic: the final quality Q_f (default QH)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--target-size", type=int, help="target file size in bytes (met within 1%%)")
    size.add_argument("--match-jpeg-quality", type=float, metavar="Q",
                      help="match the size of a plain JPEG at quality Q (within 1%%)")
    size.add_argument("--no-rate-control", action="store_true",
                      help="rdo mode: one pass at the fixed quality --quality (no size search: about 1.9x faster, "
                           "size near a Pillow JPEG's at that quality)")
    p.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help="encoder mode")
    p.add_argument("--saliency-map", help="use this greyscale image as the map instead of the model (one input)")
    p.add_argument("--subsampling", choices=("4:4:4", "4:2:2", "4:2:0"),
                   help="chroma subsampling (default: semantic_jpeg.encode's, 4:2:0 as Pillow)")
    p.add_argument("--progressive", action="store_true", help="progressive JPEG (default: baseline)")
    p.add_argument("--optimize", action="store_true",
                   help="optimised Huffman tables (--mode dct/mosaic; rdo files always have them, and there it "
                        "only makes the size reference an optimised Pillow JPEG, a few percent smaller)")
    p.add_argument("--strip", action="store_true", help="do not copy EXIF / ICC profile from the input")
    p.add_argument("--heatmap", action="store_true",
                   help="also write OUTPUT.heatmap.png: the saliency map overlaid on the image")
    p.set_defaults(func=run)


@dataclass
class Job:
    """One input and where it goes."""
    name: str                 # shown in messages
    path: str | None = None   # input file (None: stdin or a sample)
    data: bytes | None = None  # stdin's bytes
    sample: str | None = None
    stem: str = ""            # output name relative to the output folder, without extension
    output: str | None = None  # output file, or "-" for stdout
    heatmap: str | None = None


# ----- planning (parent process, before any work)
class UsageError(Exception):
    """A problem with the command line as a whole: nothing was done."""


def _gather(args, failures) -> tuple[list[Job], bool]:
    """The jobs of the command line, in order, and whether the output must be a folder (a folder among the
    inputs, or several inputs named, counting those that turn out to be missing: one typo must not turn the
    output folder into a file); inputs that do not exist or are not images go to ``failures``."""
    jobs, folder_input = [], False
    if args.sample:
        jobs.append(Job(name=f"{args.sample}.png", sample=args.sample, stem=args.sample))
    entries = list(args.inputs)
    if args.from_file is not None:
        if args.from_file == "-" and "-" in entries:
            raise UsageError("standard input cannot be both an input image ('-') and the list (--from-file -)")
        try:
            if args.from_file == "-":
                text = sys.stdin.read()
            else:
                with open(args.from_file, encoding="utf-8") as handle:
                    text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--from-file: {describe_error(exc)}") from None
        entries += [line.rstrip("\r\n") for line in text.splitlines() if line.strip()]
    if entries.count("-") > 1:
        raise UsageError("standard input ('-') can be given once")
    several = len(entries) + bool(args.sample) > 1
    # the output folder is never read as input (a resumed "-r -o tree/encoded" run must not encode its outputs)
    skip = os.path.realpath(args.output) if args.output != "-" else None
    for entry in entries:
        if entry == "-":
            data = sys.stdin.buffer.read()
            if not data:
                failures.append(("<stdin>", "standard input is empty"))
                continue
            jobs.append(Job(name="<stdin>", data=data, stem="stdin"))
        elif os.path.isdir(entry):
            folder_input = True
            found = list_folder(entry, recursive=args.recursive, skip=skip)
            if not found:
                hint = "" if args.recursive else " (--recursive also searches its sub-folders)"
                failures.append((entry, f"folder holds no images{hint}"))
            for path in found:
                rel = os.path.relpath(path, entry)
                jobs.append(Job(name=path, path=path, stem=os.path.splitext(rel)[0]))
        elif not os.path.exists(entry):
            failures.append((entry, "no such file or folder"))
        elif not os.path.isfile(entry):
            failures.append((entry, "not a regular file"))
        else:
            jobs.append(Job(name=entry, path=entry, stem=os.path.splitext(os.path.basename(entry))[0]))
    return jobs, folder_input or several


def _plan(args, jobs: list[Job], to_folder: bool) -> None:
    """Set each job's output path; raise UsageError for collisions, inputs as outputs and existing outputs."""
    out = args.output
    if out == "-":
        if len(jobs) != 1:
            raise UsageError(f"-o - writes one JPEG to standard output but there are {len(jobs)} inputs")
        if args.heatmap:
            raise UsageError("--heatmap needs an output file name, not -o -")
        jobs[0].output = "-"
        return
    needed = to_folder or len(jobs) > 1
    to_folder = needed or os.path.isdir(out) or out.endswith(("/", os.sep))
    if needed and os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"output {out} is an existing file, but a folder is needed for a folder input or "
                         "several inputs")
    for job in jobs:
        job.output = os.path.join(out, job.stem + ".jpg") if to_folder else out
        if args.heatmap:
            job.heatmap = os.path.splitext(job.output)[0] + ".heatmap.png"
    inputs = [job.path for job in jobs if job.path] + ([args.saliency_map] if args.saliency_map else [])
    input_ids = set()
    for path in inputs:  # identify inputs by (device, inode): also through links and differently spelt paths
        try:
            stat = os.stat(os.path.realpath(path))
            input_ids.add((stat.st_dev, stat.st_ino))
        except OSError:
            pass
    targets: dict = {}
    for job in jobs:
        for target in filter(None, (job.output, job.heatmap)):
            targets.setdefault(os.path.normcase(os.path.realpath(target)), []).append(job)
            if TEMP_NAME.match(os.path.basename(target)):
                raise UsageError(f"{target}: names of the form .NAME.<hex>.tmp are reserved for temporary files")
            try:
                stat = os.stat(os.path.realpath(target))  # the file write_file will write
            except OSError:
                continue
            if (stat.st_dev, stat.st_ino) in input_ids:
                raise UsageError(f"{target} is an input: refusing to write over it; choose another output "
                                 "file or folder")
    clashes = [(key, js) for key, js in targets.items() if len(js) > 1]
    if clashes:
        lines = [f"{js[0].output if os.path.realpath(js[0].output) == key else key} <- "
                 + ", ".join(j.name for j in js) for key, js in clashes[:5]]
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise UsageError("several inputs would be written to the same output file, so all but one would be lost; "
                         "rename the inputs, encode them separately, or use folder inputs (their sub-folders are "
                         "kept):\n  " + "\n  ".join(lines) + more)


def _existing(args, jobs: list[Job]) -> list[Job]:
    """Handle outputs that exist: error (default), skip them (--skip-existing) or keep them (--overwrite)."""
    if args.overwrite or args.output == "-":
        return jobs
    existing = [j for j in jobs if any(p and os.path.lexists(p) for p in (j.output, j.heatmap))]
    if not existing:
        return jobs
    if args.skip_existing:
        print(f"{PROG}: skipping {len(existing)} input(s) whose output exists", file=sys.stderr)
        skip = {id(j) for j in existing}
        return [j for j in jobs if id(j) not in skip]
    names = ", ".join(p for j in existing[:5] for p in (j.output, j.heatmap) if p and os.path.lexists(p))
    more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
    raise UsageError(f"output file(s) exist: {names}{more}; pass --overwrite to replace them "
                     "(or --skip-existing to leave those inputs alone)")


# ----- the work of one image (in a worker process, or in-process with one job)
def _read(job: Job):
    from PIL import Image

    if job.sample:
        from skimage import data  # optional: pip install "semantic_jpeg[examples]"
        return Image.fromarray(getattr(data, job.sample)()), None
    from .batch import _open_image
    if job.data is not None:
        return _open_image(job.data), len(job.data)
    assert job.path is not None  # a job has a path, stdin data or a sample
    size = os.path.getsize(job.path)
    return _open_image(job.path), size


def _encode_job(job: Job, options: dict, strip: bool, heatmap: bool) -> dict:
    """Decode, encode, return the bytes (the parent writes them) and what to report."""
    import io

    from PIL import Image

    from .encoder import encode

    image, in_size = _read(job)
    notes = []
    if image.getexif().get(ORIENTATION, 1) != 1:
        # upright pixels for the map and the file (and the tag reset), as viewers show the photo: with --strip, or
        # in a viewer that ignores the tag, the stored pixels would otherwise be shown turned
        from PIL import ImageOps
        image = ImageOps.exif_transpose(image)
    metadata = {} if strip else {k: image.info[k] for k in ("exif", "icc_profile") if image.info.get(k)}
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        notes.append("has alpha, composited onto white")
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    result = encode(image, return_result=True, **options, **metadata)
    png = None
    if heatmap:
        import numpy as np

        from .heatmap import overlay
        buffer = io.BytesIO()
        Image.fromarray(overlay(np.asarray(image.convert("RGB")), result.saliency)).save(buffer, "PNG")
        png = buffer.getvalue()
    return {"data": result.data, "summary": result.summary(), "in_size": in_size, "notes": notes, "heatmap": png}


def _read_map(path: str):
    """A --saliency-map file as the encoder takes it: 8-bit images (any mode, as grey) in 0..255, 16-bit grey
    scaled from 0..65535, float ("F") as it is, in [0, 1] (Pillow's convert("L") would clip both to 0..255)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as m:
        m.load()
        if m.mode.startswith("I;16"):
            return np.asarray(m).astype(np.float32) / 65535.0
        if m.mode == "F":
            return np.asarray(m, dtype=np.float32)
        if m.mode == "I":
            raise ValueError("32-bit integer maps are ambiguous: save the map as 8-bit or 16-bit grey, or as "
                             "float in [0, 1]")
        return m.convert("L")


def _options(args, saliency) -> dict:
    """The options the user gave (and the mode); the rest are semantic_jpeg.encode's defaults, so the command
    writes the same bytes as the library with the same options."""
    options = {"saliency": saliency, "levels": args.levels,
               "quality_range": tuple(args.quality_range) if args.quality_range else None,
               "quality": args.quality, "target_size": args.target_size, "match_jpeg_quality": args.match_jpeg_quality,
               "mode": args.mode, "subsampling": args.subsampling,
               "progressive": args.progressive or None, "optimize": args.optimize or None,
               "rate_control": False if args.no_rate_control else None}
    return {k: v for k, v in options.items() if v is not None}


def run(args) -> int:
    from tqdm import tqdm

    from .batch import WorkerPool, default_jobs

    if args.mode == "rdo" and (args.levels is not None or args.quality_range):
        error(PROG, "--levels and --quality-range apply to --mode dct or mosaic; the default rdo mode takes "
                    "--quality, --target-size or --match-jpeg-quality")
        return 2
    if args.jobs is not None and args.jobs < 1:
        error(PROG, f"--jobs must be at least 1, got {args.jobs}")
        return 2
    if args.no_rate_control and args.mode != "rdo":
        error(PROG, "--no-rate-control applies to the default --mode rdo")
        return 2
    failures: list[tuple[str, str]] = []  # (name, message)
    try:
        jobs, to_folder = _gather(args, failures)
        if not jobs and not failures:
            raise UsageError("give input files or folders, --from-file, or --sample")
        if args.saliency_map and len(jobs) > 1:
            raise UsageError("--saliency-map applies to a single input")
        if jobs:
            _plan(args, jobs, to_folder)
            jobs = _existing(args, jobs)
    except UsageError as exc:
        error(PROG, str(exc))
        return 2
    for name, message in failures:
        print(f"{name}: {message}", file=sys.stderr)
    saliency = None
    if args.saliency_map and jobs:
        try:
            saliency = _read_map(args.saliency_map)
        except Exception as exc:  # noqa: BLE001 -- any unreadable map: one line
            error(PROG, f"--saliency-map {args.saliency_map}: {describe_error(exc)}")
            return 1
    total = len(jobs) + len(failures)
    n_jobs = max(1, min(args.jobs or default_jobs(), len(jobs)))
    pool = WorkerPool(_encode_job, (_options(args, saliency), args.strip, args.heatmap), jobs=n_jobs)
    pool.start()  # before the progress bar's thread exists, so the workers can be forked
    to_stdout = args.output == "-"
    report = sys.stderr if to_stdout else sys.stdout
    done = 0
    made: set[str] = set()
    bar = tqdm(total=len(jobs), desc="encoding", unit="image", disable=len(jobs) < 2, file=sys.stderr)
    try:
        for _, job, value, ok in pool.run(jobs):
            bar.update()
            if ok:
                try:
                    _write_outputs(job, value, args.overwrite, made)
                except OSError as exc:
                    ok, value = False, exc
            if not ok:
                message = describe_error(value, job.path)
                failures.append((job.name, message))
                bar.write(f"{job.name}: {message}", file=sys.stderr)
                continue
            done += 1
            for note in value["notes"]:
                bar.write(f"{job.name}: {note}", file=sys.stderr)
            in_size = f" (input {value['in_size']} B)" if value["in_size"] else ""
            target = "<stdout>" if to_stdout else job.output
            bar.write(f"{job.name} -> {target}: {value['summary']}{in_size}", file=report)
    except KeyboardInterrupt:
        bar.close()
        print(f"{PROG}: interrupted: {done} of {total} image(s) written and kept"
              + (f", {len(failures)} failed" if failures else "") + "; the file being written was removed",
              file=sys.stderr)
        return 130
    finally:
        bar.close()
    if failures:
        shown = failures[:20] if len(failures) > 20 else failures
        print(f"{PROG}: {len(failures)} of {total} input(s) failed, {done} written"
              + (":" if len(failures) > 1 else ""), file=sys.stderr)
        if len(failures) > 1:  # collected at the end, where a long run's scrolled-away lines can be found
            for name, message in shown:
                print(f"  {name}: {message}", file=sys.stderr)
            if len(failures) > len(shown):
                print(f"  ... and {len(failures) - len(shown)} more", file=sys.stderr)
        return 1
    return 0


def _write_outputs(job: Job, value: dict, overwrite: bool, made: set) -> None:
    if job.output == "-":
        sys.stdout.buffer.write(value["data"])
        sys.stdout.buffer.flush()
        return
    assert job.output is not None  # planned before any work
    folder = os.path.dirname(os.path.realpath(job.output))
    if folder not in made:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create the output folder ({exc.strerror})", folder) from None
        made.add(folder)
    # the heatmap first: when it cannot be written, the input failed and wrote nothing (not a JPEG reported
    # as failed but left behind)
    if value["heatmap"] is not None and job.heatmap is not None:
        write_file(job.heatmap, value["heatmap"], overwrite=overwrite)
    write_file(job.output, value["data"], overwrite=overwrite)
