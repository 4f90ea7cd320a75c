"""``peterrec`` subcommands of the data room: ``synth``, ``ingest``, ``task-examples``.

Only argparse is imported here; Beam and the pipelines load inside the handlers.

Examples::

    peterrec synth --output data/synthetic --users 2000 --seed 0
    peterrec ingest --format csv --source data/synthetic/interactions.csv --domain source --output out/pretrain
    peterrec ingest --format movielens-1m --source ../shared/data/ml-1m --output out/ml1m \\
        --beam-arg=--runner=FlinkRunner --beam-arg=--flink_master=localhost:8081
    peterrec task-examples attribute --format csv --source data/synthetic/interactions.csv --domain source \\
        --labels data/synthetic/gender.csv --vocabulary out/pretrain/vocabulary --output out/gender
    peterrec task-examples cold-start --format movielens-1m --source ../shared/data/ml-1m \\
        --domain-rule movielens-genre --max-target-items 5 --vocabulary out/ml1m/vocabulary --output out/coldstart

``ingest`` writes OUTPUT/examples (Split-*/ TFRecords), OUTPUT/vocabulary/vocabulary.json
and OUTPUT/rejects (rejects-*.jsonl, summary.json); task-examples writes OUTPUT/examples,
OUTPUT/label_vocabulary or OUTPUT/target_vocabulary, and OUTPUT/rejects.
"""

import argparse

FORMATS = ("movielens-1m", "movielens-100k", "csv", "peterrec-csv")


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", required=True, choices=FORMATS, dest="source_format",
                        help="input format of the interactions")
    parser.add_argument("--source", required=True, help="a MovieLens folder, or a file, folder or glob of CSVs")
    parser.add_argument("--output", required=True, help="output folder (examples/, vocabularies, rejects/)")
    parser.add_argument("--max-len", type=int, default=None,
                        help="cap: keep only the most recent N items per user (default: whole histories; "
                             "the context a model reads is set when training and serving)")
    parser.add_argument("--max-reject-fraction", type=float, default=0.01,
                        help="fail when more than this fraction of lines is rejected (0.01)")
    parser.add_argument("--domain", default=None,
                        help="keep only this domain in the sequences (e.g. 'source' before a cold-start task)")
    parser.add_argument("--domain-rule", default=None, choices=("movielens-genre",),
                        help="how MovieLens items get a domain "
                             "(first genre in Action/Horror/Sci-Fi/Thriller -> target)")
    parser.add_argument("--split", action="append", default=None, metavar="NAME=FRACTION",
                        help="user split, repeatable (default train=0.8 eval=0.1 test=0.1)")
    parser.add_argument("--split-salt", default="", help="salt of the user-id hash that assigns splits")
    parser.add_argument("--num-shards", type=int, default=0,
                        help="TFRecord files per split (0: one per 64 MiB of input); "
                             "the same input gives the same files on every run")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="--FLAG=VALUE",
                        help="a Beam pipeline option passed through unchanged, repeatable; write it with '=', "
                             "e.g. --beam-arg=--runner=FlinkRunner (default: DirectRunner on all cores)")


def _split_fractions(values):
    if not values:
        return None
    pairs = []
    for value in values:
        name, sep, fraction = value.partition("=")
        if not sep:
            raise SystemExit(f"--split expects NAME=FRACTION, got {value!r}")
        pairs.append((name, float(fraction)))
    return tuple(pairs)


def _common(args) -> dict:
    settings = dict(source_format=args.source_format, source_path=args.source, max_len=args.max_len,
                    max_reject_fraction=args.max_reject_fraction, domain=args.domain,
                    domain_rule=args.domain_rule, split_salt=args.split_salt, num_shards=args.num_shards)
    fractions = _split_fractions(args.split)
    if fractions:
        settings["split_fractions"] = fractions
    return settings


def _setup_logging() -> None:
    """Shows peterrec's progress lines on stderr (Beam may have configured the root logger)."""
    import logging
    import sys

    logger = logging.getLogger("peterrec")
    if not any(getattr(h, "_peterrec_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        handler._peterrec_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    logging.getLogger("peterrec.components.summary").setLevel(logging.WARNING)  # printed on stdout instead
    logging.getLogger("apache_beam").setLevel(logging.WARNING)


def _run(job) -> int:
    import sys

    from peterrec.components.records import IngestError
    from peterrec.components.vocabulary import VocabularyError

    try:
        summary = job()
    except (IngestError, VocabularyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.format_table())
    return 0


def _synth(args) -> int:
    from peterrec.components import synthetic

    given = {"users": args.users, "source_items": args.source_items, "target_items": args.target_items,
             "min_source_len": args.min_len, "max_source_len": args.max_len}
    config = synthetic.SyntheticConfig.preset(args.preset, seed=args.seed,
                                              **{k: v for k, v in given.items() if v is not None})
    paths = synthetic.generate(args.output, config)
    print(f"wrote {config.users} synthetic users (seed {config.seed}):")
    print(f"  interactions  {paths.interactions}")
    for name, path in paths.attributes.items():
        print(f"  {name:<12}  {path}")
    return 0


def _ingest(args) -> int:
    import os

    from peterrec.components import ingest

    _setup_logging()
    config = ingest.IngestConfig(min_item_count=args.min_item_count, **_common(args))
    return _run(lambda: ingest.run_ingestion(
        config, os.path.join(args.output, "examples"), os.path.join(args.output, "vocabulary"),
        os.path.join(args.output, "rejects"), beam_pipeline_args=args.beam_arg,
        vocabulary=args.vocabulary))


def _attribute(args) -> int:
    import os

    from peterrec.components import task_examples

    _setup_logging()
    config = task_examples.AttributeTaskConfig(label_format=args.label_format, label_path=args.labels,
                                               attribute=args.attribute, **_common(args))
    return _run(lambda: task_examples.run_attribute_task(
        config, os.path.join(args.output, "examples"), os.path.join(args.output, "label_vocabulary"),
        os.path.join(args.output, "rejects"), args.vocabulary, beam_pipeline_args=args.beam_arg,
        expected_vocabulary_fingerprint=args.expect_fingerprint))


def _cold_start(args) -> int:
    import os

    from peterrec.components import task_examples

    _setup_logging()
    config = task_examples.ColdStartTaskConfig(source_domain=args.source_domain, target_domain=args.target_domain,
                                               max_target_items=args.max_target_items, **_common(args))
    return _run(lambda: task_examples.run_cold_start_task(
        config, os.path.join(args.output, "examples"), os.path.join(args.output, "target_vocabulary"),
        os.path.join(args.output, "rejects"), args.vocabulary, beam_pipeline_args=args.beam_arg,
        expected_vocabulary_fingerprint=args.expect_fingerprint))


def register(subparsers) -> None:
    """Adds ``synth``, ``ingest`` and ``task-examples`` to the ``peterrec`` command."""
    synth = subparsers.add_parser("synth", help="write the seeded synthetic two-domain data set",
                                  description="Writes interactions.csv (user,item,timestamp,domain), "
                                              "gender.csv and age.csv (user,label) of synthetic users.")
    synth.add_argument("--output", required=True, help="folder to write into")
    synth.add_argument("--preset", default="default", choices=("default", "hard"),
                       help="default: clear signal (2,000 users); hard: 1,000 users whose attributes a linear "
                            "model predicts only a few points above the majority rate")
    synth.add_argument("--users", type=int, default=None, help="number of users (preset's; default 2000)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (0)")
    synth.add_argument("--source-items", type=int, default=None, help="items of the source domain (300)")
    synth.add_argument("--target-items", type=int, default=None, help="items of the target domain (200)")
    synth.add_argument("--min-len", type=int, default=None, help="shortest source sequence (20)")
    synth.add_argument("--max-len", type=int, default=None, help="longest source sequence (60)")
    synth.set_defaults(handler=_synth)

    ingest = subparsers.add_parser("ingest", help="raw interactions -> sequence examples + item vocabulary (Beam)",
                                   description="Reads interactions, writes OUTPUT/examples, OUTPUT/vocabulary "
                                               "and OUTPUT/rejects, and prints a summary.")
    _add_source_arguments(ingest)
    ingest.add_argument("--min-item-count", type=int, default=1,
                        help="items seen fewer times map to <unk> (1)")
    ingest.add_argument("--vocabulary", default=None,
                        help="reuse this item vocabulary (folder or vocabulary.json) instead of building one")
    ingest.set_defaults(handler=_ingest)

    tasks = subparsers.add_parser("task-examples", help="fine-tuning examples for an attribute or cold-start task")
    kinds = tasks.add_subparsers(dest="task_kind", metavar="KIND")
    tasks.set_defaults(handler=lambda args: (tasks.print_help(), 2)[1])

    attribute = kinds.add_parser("attribute", help="source sequence + class label from an attribute table")
    _add_source_arguments(attribute)
    attribute.add_argument("--vocabulary", required=True, help="the pretraining item vocabulary (folder or file)")
    attribute.add_argument("--expect-fingerprint", default=None, help="fail unless the vocabulary has this fingerprint")
    attribute.add_argument("--labels", default=None,
                           help="attribute table (default: users.dat / u.user next to a MovieLens source)")
    attribute.add_argument("--label-format", default=None, choices=FORMATS,
                           help="format of the attribute table (default: the source format)")
    attribute.add_argument("--attribute", default="label",
                           help="gender, age or occupation for MovieLens; the label column for CSV ('label')")
    attribute.set_defaults(handler=_attribute)

    cold = kinds.add_parser("cold-start", help="source sequence + target-domain items")
    _add_source_arguments(cold)
    cold.add_argument("--vocabulary", required=True, help="the pretraining item vocabulary (folder or file)")
    cold.add_argument("--expect-fingerprint", default=None, help="fail unless the vocabulary has this fingerprint")
    cold.add_argument("--source-domain", default="source", help="name of the source domain ('source')")
    cold.add_argument("--target-domain", default="target", help="name of the target domain ('target')")
    cold.add_argument("--max-target-items", type=int, default=None,
                      help="train users keep at most this many (earliest) target items, e.g. 3 or 5")
    cold.set_defaults(handler=_cold_start)
