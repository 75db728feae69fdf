"""``python -m semantic_jpeg.evaluation``: same as ``semantic-jpeg evaluate``."""
import sys

from ..cli import Parser
from .cli import add_arguments, run


def main(argv=None) -> int:
    parser = Parser(prog="python -m semantic_jpeg.evaluation", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
