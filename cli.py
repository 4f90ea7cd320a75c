"""The ``peterrec`` command line: one subcommand per job, imports kept lazy.

Each room contributes its subcommands through a ``cli`` module that only touches
argparse at import time; TensorFlow, Beam and TFX are imported inside the handlers, so
``peterrec --help`` answers at once.
"""

import argparse
import importlib
import sys
from typing import List, Optional

# Rooms whose ``<room>.cli`` module defines ``register(subparsers)``.
_ROOM_CLIS = (
    "peterrec.components.cli",
    "peterrec.trainer.cli",
    "peterrec.serving.cli",
    "peterrec.serving.export_cli",
    "peterrec.pipeline.cli",
)


def build_parser() -> argparse.ArgumentParser:
    """Builds the top-level parser with every room's subcommands."""
    parser = argparse.ArgumentParser(
        prog="peterrec",
        description="Pretrain a sequential recommender once, fine-tune many tasks with patches.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _ROOM_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue  # that room has no commands yet
        module.register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``peterrec`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
