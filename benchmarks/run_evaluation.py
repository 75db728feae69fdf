r"""Defense evaluation benchmark (Prakash et al., DCC 2018 and CVPR 2018; thesis Tables 3.1, 4.1, 4.6-4.11):
attacks with ART on EfficientNet-Lite0, our defenses vs ART's peers, ablations, adaptive BPDA+EOT PGD.

Prints the Markdown tables and writes OUT/<name>.{json,md} and <name>_accuracy_vs_distortion.png with the exact
command. Same options as ``python -m semantic_jpeg.evaluation --help``, except that --data defaults to
../shared/data/imagenet_samples beside the checkout. --out is required (pass --out benchmarks/results --overwrite
to update the committed results on purpose: existing results are replaced only with --overwrite); the cache
defaults to the user cache folder ($XDG_CACHE_HOME/semantic_jpeg/evaluation), never the repository. Examples:

    python benchmarks/run_evaluation.py --out benchmarks/results --subset 100 --attacks fgsm bim igsm pgd \
        --draws 10 --defenses pd pd+rcam pd+rcam+dwt jpeg msroi-jpeg aug-msroi-jpeg fft-lowpass color-depth svd \
        gaussian uniform laplace art-jpeg art-squeeze art-smooth --ablation-images 0 --adaptive-images 0 \
        --name evaluation_cpu100_quick     # 25 min from an empty cache on the 2-core CPU
    python benchmarks/run_evaluation.py --out benchmarks/results --subset 100
        # everything, well over an hour on that CPU (DeepFool 3-13 s, adaptive PD+R-CAM+DWT 37 s,
        # Aug-MSROI 55 s per image)
    python benchmarks/run_evaluation.py --out benchmarks/results --subset 100 --attacks fgsm igsm pgd \
        --defenses pd+rcam+dwt jpeg aug-msroi-jpeg svd art-smooth --sweep-images 100 --sweep-attacks fgsm igsm pgd \
        --sweep-defenses pd+rcam+dwt jpeg aug-msroi-jpeg svd art-smooth --ablation-images 0 --adaptive-images 0 \
        --name evaluation_budget_sweep_cpu100   # destruction rate at L-inf 0.5/255-16/255: 44 min on that CPU
    python benchmarks/run_evaluation.py --out benchmarks/results --subset 0 --device cuda --threads 0
        # all 500 images on a GPU

--threads defaults to 1 (see --help); the timings above were measured with --threads 2.
"""
import argparse
import shlex
import sys
from pathlib import Path

from semantic_jpeg.cli import DefaultsHelpFormatter
from semantic_jpeg.evaluation.cli import add_arguments, run

ROOT = Path(__file__).resolve().parents[1]


class HelpFormatter(DefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The package's option help (defaults shown) under this docstring as written."""


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    add_arguments(parser)
    for action in parser._actions:  # the benchmark convention: data beside the checkout
        if action.dest == "data":
            action.required = False
    parser.set_defaults(data=str(ROOT.parent / "shared/data/imagenet_samples"))
    args = parser.parse_args()
    args.command_line = "python benchmarks/run_evaluation.py " + shlex.join(sys.argv[1:])
    sys.exit(run(args))
