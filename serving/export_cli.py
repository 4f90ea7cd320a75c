"""``peterrec export``: assemble a backbone export and patch artifacts into one served SavedModel.

    peterrec export --backbone runs/pretrain/export \\
        --task runs/genre/patch --task runs/shop/patch \\
        --model-base models/peterrec [--top-k 100] [--max-len 50] [--label stable|canary]

writes ``models/peterrec/<N>/`` (N = the highest existing version + 1, written aside then
renamed into place) and updates ``models/models.config``, ``batching_parameters.txt`` and
``monitoring.config`` beside the model base. Only argparse is imported here; TensorFlow loads
inside the handler (``peterrec.serving.assembly``).
"""

import argparse
import sys
import time


def register(subparsers) -> None:
    """Adds ``export`` to the ``peterrec`` parser."""
    parser = subparsers.add_parser(
        "export",
        help="assemble a backbone and task patches into one multi-signature SavedModel version",
        description="Writes the next version of ONE SavedModel that stores the pretrained backbone once and "
        "serves every task as its own signature (named by the task), plus 'embed' and 'next_items'; "
        "then updates the TF Serving files (models.config, batching parameters, monitoring config) "
        "beside the model base and reports the size on disk.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``peterrec export``."""
    parser.add_argument("--backbone", required=True, help="backbone export folder (from pretraining)")
    parser.add_argument("--task", action="append", required=True, metavar="[NAME=]DIR",
                        help="patch artifact folder of a fine-tuned task (repeat for each task); NAME= serves it "
                        "under another signature name")
    parser.add_argument("--model-base", required=True, metavar="DIR/NAME",
                        help="the model's base path; NAME is the served model name, versions go to DIR/NAME/<N>/")
    parser.add_argument("--top-k", type=int, default=100,
                        help="items returned by cold-start and next_items signatures (default 100)")
    parser.add_argument("--max-len", type=int, default=200,
                        help="most recent items of a request the model reads, as in training (default 200)")
    parser.add_argument("--label", default=None, metavar="LABEL",
                        help="point this version label (stable or canary) at the new version in models.config")
    parser.add_argument("--config-dir", default=None,
                        help="where models.config and friends go (default: the folder holding DIR/NAME)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="do not write assets.extra/tf_serving_warmup_requests")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")


def run(args) -> int:
    """Handler of ``peterrec export``: returns 0, or 2 with a message on stderr when it cannot export."""
    started = time.perf_counter()

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    if args.top_k < 1 or args.max_len < 1:
        print("error: --top-k and --max-len must be >= 1", file=sys.stderr)
        return 2
    from peterrec.components.vocabulary import VocabularyError
    from peterrec.serving import assembly
    from peterrec.serving.model_config import ModelConfigError
    from peterrec.trainer.artifacts import ArtifactError

    try:
        result = assembly.export_serving_model(
            args.backbone, args.task, args.model_base, top_k=args.top_k, max_len=args.max_len, label=args.label,
            warmup=not args.no_warmup, config_dir=args.config_dir, log=log)
    except (ArtifactError, assembly.AssemblyError, ModelConfigError, VocabularyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in result.lines():
        print(line)
    return 0


def main(argv=None) -> int:
    """``python -m peterrec.serving.export_cli ...`` (the same as ``peterrec export ...``)."""
    parser = argparse.ArgumentParser(prog="peterrec export")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
