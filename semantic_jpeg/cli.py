"""The ``semantic-jpeg`` command. Each component contributes its subcommands through a ``cli`` module
with ``register(subparsers)``; those modules import heavy dependencies (torch, onnxruntime) only when their
subcommand runs, so ``semantic-jpeg --help`` stays fast and torch-free.

Errors a user can cause (a missing or unreadable file, a folder where a file is expected, an image over
Pillow's decompression-bomb limit, a corrupted model) end every subcommand with one line on stderr and exit
status 1, never a traceback; Ctrl-C ends it with status 130. Set ``SEMANTIC_JPEG_DEBUG=1`` to see tracebacks."""
import argparse
import importlib
import os
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
    from . import __version__

    parser = Parser(
        prog="semantic-jpeg", description="Semantic JPEG compression, purification filters and their models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMPONENT_CLIS:
        importlib.import_module(name).register(sub)
    return parser


# errors of the user's files and environment, reported in one line (anything else is a bug: traceback)
USER_ERRORS = (OSError, ValueError, MemoryError, ImportError)
USER_ERROR_NAMES = {"DecompressionBombError", "ModelIntegrityError"}
EXTRAS = {"onnxruntime": "cpu", "torch": "training", "onnx": "training", "art": "evaluation", "skimage": "examples",
          "cv2": "evaluation", "matplotlib": "examples"}


def main(argv=None) -> int:
    from ._cliutil import describe_error

    args = build_parser().parse_args(argv)
    prog = "semantic-jpeg " + " ".join(filter(None, (args.command, getattr(args, "train_kind", None))))
    debug = os.environ.get("SEMANTIC_JPEG_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug or not (isinstance(exc, USER_ERRORS) or type(exc).__name__ in USER_ERROR_NAMES):
            raise
        message = describe_error(exc)
        if isinstance(exc, ImportError) and exc.name:
            extra = EXTRAS.get(exc.name.split(".")[0])
            if extra:
                message += f' (pip install "semantic_jpeg[{extra}]")'

        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
