"""Command line: `python -m fastlanczos demo [options]` (also the `fastlanczos` script)."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastlanczos", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from . import demo

    demo.add_arguments(commands.add_parser(
        "demo", help="Laplace posterior of a small CNN on scikit-learn's digits"))
    args = parser.parse_args(argv)
    return demo.main(args)


if __name__ == "__main__":
    sys.exit(main())
