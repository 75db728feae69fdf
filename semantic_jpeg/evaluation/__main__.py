"""``python -m semantic_jpeg.evaluation``: same as ``semantic-jpeg evaluate`` (same options, messages and exit
status)."""
import sys


def main(argv=None) -> int:
    from ..cli import main as command

    return command(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
