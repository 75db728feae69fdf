"""``semantic-jpeg evaluate`` / ``python -m semantic_jpeg.evaluation``: the defense evaluation (imports torch and
ART only when the command runs)."""
from __future__ import annotations

import argparse
import errno
import os
import shlex
import sys
from fractions import Fraction

from semantic_jpeg._cliutil import describe_error, error, temp_name

PROG = "semantic-jpeg evaluate"


def user_cache_dir() -> str:
    """Where the evaluation caches attacks and defended images unless --cache says otherwise:
    ``$XDG_CACHE_HOME/semantic_jpeg/evaluation`` (``~/.cache/...`` when the variable is unset)."""
    from .cache import user_cache_dir as cache_dir

    return cache_dir()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="imagenet_samples folder with labels.csv (required)")
    p.add_argument("--subset", type=int, default=100, help="random subset of N images (0: all)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the image subset and of every random draw (attack starts, targets, defenses)")
    p.add_argument("--attacks", nargs="+", default=None,
                   help="fgsm bim igsm pgd deepfool cw deepfool-l2 cw-l2 jsma (deepfool-l2, cw-l2: the minimal "
                        "perturbations scaled to the |L2| 0.02, 0.04 of Prakash et al. (CVPR 2018) Table 4.1; "
                        "default: fgsm bim igsm pgd deepfool cw)")
    p.add_argument("--defenses", nargs="+", default=None, help="defense names (default: all)")
    p.add_argument("--draws", type=int, default=10, help="draws of stochastic defenses for Ens-k")
    p.add_argument("--sweep-images", type=int, default=0,
                   help="images for the destruction rate against the L-inf budget (0: skip)")
    p.add_argument("--sweep-attacks", nargs="+", default=None,
                   help="attacks swept: budgeted ones over --sweep-eps, deepfool and cw over --sweep-rmse "
                        "(default: fgsm igsm)")
    p.add_argument("--sweep-eps", nargs="+", type=budget, default=None,
                   help="L-inf budgets in [0,1] units, fractions allowed (default: 0.5/255 1/255 2/255 4/255 "
                        "8/255 16/255; each attack's own budget is always added)")
    p.add_argument("--sweep-rmse", nargs="+", type=float, default=None,
                   help="|L2| (RMSE, [0,1] units) to which the minimal perturbations of a swept deepfool or cw "
                        "are scaled (default: 0.0025 0.005 0.01 0.02 0.04; the minimal one is always added)")
    p.add_argument("--sweep-defenses", nargs="+", default=None,
                   help="defenses scored in the sweep (default: pd+rcam+dwt jpeg aug-msroi-jpeg art-smooth)")
    p.add_argument("--ablation-images", type=int, default=20, help="images for the ablations (0: skip)")
    p.add_argument("--ablations", nargs="+", default=None,
                   help="ablation tables by number: 3.1 (JPEG quality sweep and PSNR-matched semantic JPEG) "
                        "4.1 (the paper's text vs the authors' released code) 4.7 4.8 4.9 4.10 4.11 (default: all)")
    p.add_argument("--adaptive-images", type=int, default=10, help="images for the BPDA+EOT attack (0: skip)")
    p.add_argument("--adaptive-defenses", nargs="+", default=None,
                   help="defenses attacked adaptively (default: pd+rcam+dwt aug-msroi-jpeg best-lossy)")
    p.add_argument("--adaptive-steps", type=int, default=50, help="PGD steps of the BPDA+EOT attack")
    p.add_argument("--adaptive-eot", type=int, default=10, help="EOT draws of the defense per step")
    p.add_argument("--cache", default=None,
                   help="attack/defense cache folder ('' off; default: $XDG_CACHE_HOME/semantic_jpeg/evaluation, "
                        "i.e. ~/.cache/semantic_jpeg/evaluation)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; 0: one per CPU this process may use. One thread never oversubscribes: "
                        "attacks run batch-1 forward/backward passes, and several torch threads on cores that other "
                        "work also uses can be many times slower than one; use more only on otherwise idle cores")
    p.add_argument("--out", required=True, help="folder for the JSON, Markdown and plot (required)")
    p.add_argument("--name", default="evaluation", help="file name stem of the outputs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the result files of an earlier run with the same --out and --name")


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def budget(text: str) -> float:
    """An L-inf budget from the command line: a number or a fraction such as 4/255 or 0.5/255."""
    parts = text.split("/")
    try:
        if len(parts) > 2:
            raise ValueError(text)
        return float(Fraction(parts[0]) / Fraction(parts[1] if len(parts) == 2 else 1))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None


def ablation_titles(numbers: list[str]) -> tuple[str, ...]:
    """The ablation tables named by their paper table numbers ("3.1", "4.7", ...), in the runner's order."""
    from .defenses import ABLATIONS

    number = {t: t.split()[1].rstrip(":") for t in ABLATIONS}  # "Table 4.7: ..." -> "4.7"
    unknown = [n for n in numbers if n not in number.values()]
    if unknown:
        raise ValueError(f"unknown ablation table(s) {unknown}; choose from {sorted(set(number.values()))}")
    return tuple(t for t in ABLATIONS if number[t] in numbers)


def check_outputs(out: str, name: str, overwrite: bool) -> None:
    """Before any work: ``name`` is a plain file name, no result file exists unless ``overwrite``, and ``out``
    can be created and written (ValueError or OSError naming the problem, never after hours of attacks)."""
    from .runner import output_paths, refuse_existing

    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is an existing file, not a folder")
    try:
        paths = output_paths(out, name)
    except ValueError as exc:
        raise ValueError(f"--name: {exc}") from None
    refuse_existing(list(paths.values()), overwrite)
    longest = max((p.name for p in paths.values()), key=len)
    try:
        _probe_folder(out, longest)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise ValueError(f"--name is too long: {longest} is longer than the file system allows") from None
        raise ValueError(f"--out {out} cannot be written: {describe_error(exc)}") from None


def _probe_folder(folder: str, file_name: str) -> None:
    """Create ``folder`` (and its missing parents) and, in it, the temporary file that writing ``file_name``
    goes through; then remove what was made, so a failed run leaves nothing behind."""
    made = []
    parent = os.path.abspath(folder)
    while not os.path.isdir(parent) and os.path.dirname(parent) != parent:
        made.append(parent)
        parent = os.path.dirname(parent)
    try:
        os.makedirs(folder, exist_ok=True)
        probe = temp_name(os.path.join(folder, file_name))
        with open(probe, "xb"):
            pass
        os.unlink(probe)
    finally:
        for path in made:  # deepest first
            try:
                os.rmdir(path)
            except OSError:
                pass


def run(args: argparse.Namespace) -> int:
    from .runner import EvalConfig, evaluate, write_outputs

    if args.threads < 0:
        error(PROG, f"--threads must be >= 0, got {args.threads}")
        return 2
    threads = args.threads or _available_cpus()
    cache = user_cache_dir() if args.cache is None else (args.cache or None)
    cfg = EvalConfig(data=args.data, subset=args.subset or None, seed=args.seed, draws=args.draws,
                     sweep_images=args.sweep_images, ablation_images=args.ablation_images,
                     adaptive_images=args.adaptive_images, adaptive_steps=args.adaptive_steps,
                     adaptive_eot=args.adaptive_eot,
                     cache_dir=cache, device=args.device, threads=threads,
                     command=getattr(args, "command_line", None) or shlex.join(sys.argv))
    if args.attacks:
        cfg.attacks = tuple(args.attacks)
    if args.defenses:
        cfg.defenses = tuple(args.defenses)
    for option in ("sweep_attacks", "sweep_eps", "sweep_rmse", "sweep_defenses"):
        if getattr(args, option):
            setattr(cfg, option, tuple(getattr(args, option)))
    if args.adaptive_defenses:
        cfg.adaptive_defenses = tuple(args.adaptive_defenses)
    try:  # bad names, budgets, data, device or outputs: a message, not a traceback an hour in
        if args.ablations:
            cfg.ablations = ablation_titles(args.ablations)
        cfg.check()
        check_outputs(args.out, args.name, args.overwrite)
    except (ValueError, OSError) as exc:
        error(PROG, describe_error(exc))
        return 2
    results = evaluate(cfg)
    paths = write_outputs(results, args.out, args.name, overwrite=args.overwrite)
    print(paths["md"].read_text(encoding="utf-8"))
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="attack EfficientNet-Lite0 and score the defenses (paper tables)",
                              description=__doc__)
    add_arguments(p)
    p.set_defaults(func=run)
