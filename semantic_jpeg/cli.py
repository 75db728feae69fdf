"""The ``semantic-jpeg`` command. Each component contributes its subcommands through a ``cli`` module
with ``register(subparsers)``; those modules import heavy dependencies (torch, onnxruntime) only when their
subcommand runs, so ``semantic-jpeg --help`` stays fast and torch-free."""
import argparse
import importlib
import sys

# component CLI modules, in the order their subcommands are listed
COMPONENT_CLIS = (
    "semantic_jpeg.codec.cli",          # encode
    "semantic_jpeg.onnx_models.cli",    # maps, predict
    "semantic_jpeg.training.cli",       # export, train
    "semantic_jpeg.evaluation.cli",     # evaluate
)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """argparse's ArgumentDefaultsHelpFormatter, less the noise: an option's help ends with its default unless
    the default is None or False (an unset option, a flag) or the help text already states it."""

    def _get_help_string(self, action):
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if not action.option_strings or unset or "default" in action.help:
            return action.help
        return f"{action.help} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The command's parser class; subcommand parsers (which argparse builds with the parent's class) inherit
    the help formatter."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="semantic-jpeg", description="Semantic JPEG compression, purification filters and their models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMPONENT_CLIS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
