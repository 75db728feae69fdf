"""The ``--out`` folder of a training run (torch-free).

- A previous run in the folder is never replaced unless asked: ``--resume`` continues it, ``--overwrite``
  replaces it.
- A resumed run must have the settings of the run it continues (they are recorded in ``run.json``): a changed
  width would fail to load, and a changed learning rate or data set would silently mix two runs.
- An input of the run (the model that ``selective-dropout`` fine-tunes) is never written over.
- A folder that the command created is removed again when the command fails before writing anything into it.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from .._cliutil import write_file

RUN_FILE = "run.json"
CHECKPOINT = "checkpoint.pt"
# files that mean "a run was here" (a run.json alone is left by a run that failed before its first epoch)
RUN_OUTPUTS = (CHECKPOINT, "model.pt", "readout.pt", "metrics.jsonl")
# options that may change between a run and its resumption: where and how it runs, and how long (--epochs
# extends a run), not what it trains
NOT_SETTINGS = frozenset({"func", "command", "train_kind", "out", "resume", "overwrite", "no_progress", "epochs",
                          "device", "threads", "cache", "export", "model_dir", "val_every", "recorded_command"})


def settings_of(args) -> dict:
    """The options of ``args`` that define what a run trains, JSON-ready (paths resolved, so a data set named
    from another working folder is the same data set)."""
    settings = {}
    for key, value in sorted(vars(args).items()):
        if key in NOT_SETTINGS:
            continue
        if isinstance(value, Path):
            value = str(value.resolve())
        elif isinstance(value, tuple):
            value = list(value)
        settings[key] = value
    return settings


def prepare(out: Path, settings: dict, *, resume: bool, overwrite: bool, inputs=(), resumable: bool = True) -> None:
    """Check ``out`` before any work; ValueError / FileExistsError / FileNotFoundError naming the problem.
    ``resumable``: whether the command has --resume (the message offers it only then)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; it must be a folder (created when missing)")
    for path in inputs:
        if Path(path).exists() and out.exists() and os.path.samefile(path, out):
            raise ValueError(f"--out {out} is the folder of this run's input {path}: choose another --out, so the "
                             "input is not written over")
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise FileNotFoundError(f"cannot resume: {out / CHECKPOINT} not found")
        recorded = _recorded(out)
        if recorded is not None:
            changed = [f"--{key.replace('_', '-')} {settings.get(key)!r} (the run has {recorded.get(key)!r})"
                       for key in sorted(set(recorded) | set(settings)) if recorded.get(key) != settings.get(key)]
            if changed:
                raise ValueError(f"--resume continues the run in {out} with its own settings, but these differ: "
                                 f"{'; '.join(changed)}. Resume with the run's settings, or start a new run "
                                 "(--overwrite, or another --out)")
        return
    found = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if found and not overwrite:
        resume_hint = "--resume to continue it, " if resumable else ""
        raise FileExistsError(f"{out} holds a previous run ({', '.join(found)}): pass {resume_hint}--overwrite to "
                              "replace it, or choose another --out")


def _record(out: Path, settings: dict) -> None:
    """Write ``out/run.json`` (atomically) with the settings of the run."""
    out.mkdir(parents=True, exist_ok=True)
    write_file(out / RUN_FILE, (json.dumps(settings, indent=1, sort_keys=True) + "\n").encode(), overwrite=True)


def _recorded(out: Path) -> dict | None:
    path = out / RUN_FILE
    if not path.is_file():  # a run from before run.json existed: nothing to compare
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable ({exc}); delete it to resume without the settings check") from None
    return recorded if isinstance(recorded, dict) else None


@contextlib.contextmanager
def run(out: Path, settings: dict, *, resume: bool):
    """The body of a run in ``out`` (after :func:`prepare`): a new run records its ``settings`` in ``run.json``
    (what a later --resume checks); when the body fails and ``out`` was created by it and left empty (or holding
    only ``run.json``), ``out`` is removed again, so a failed command leaves no empty output folder behind."""
    out = Path(out)
    existed = out.exists()
    try:
        if not resume:
            _record(out, settings)
        yield
    except BaseException:
        if not existed and out.is_dir():
            leftovers = [p for p in out.iterdir() if p.name != RUN_FILE]
            if not leftovers:
                (out / RUN_FILE).unlink(missing_ok=True)
                out.rmdir()
        raise
