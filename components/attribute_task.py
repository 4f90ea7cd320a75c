"""Attribute-task examples: a user's source sequence plus a class label from an attribute table.

Each example is a user's source sequence (ids of the *pretraining* item vocabulary,
passed in and checked) plus a class ``label`` from an attribute table (MovieLens
``users.dat`` / ``u.user`` gender, age or occupation, a generic ``user,label`` CSV, or a
PeterRec CSV's target field). The label vocabulary is built over the labelled users (or
a given one is reused) and written to ``label_vocabulary_dir``. Labels of users without a
sequence are rejected (``unknown_user``), users without a label too (``missing_label``),
and so are second labels of a user (``duplicate_user``).
"""

from typing import Optional, Sequence, Union

from peterrec.components import readers
from peterrec.components.beam_driver import BeamRun, check_settings, combine_histories, source_buckets
from peterrec.components.ingest_config import source_files
from peterrec.components.records import (
    DUPLICATE_USER, EMPTY_SEQUENCE, MISSING_LABEL, UNKNOWN_LABEL, UNKNOWN_USER, Reject)
from peterrec.components.task_config import AttributeTaskConfig
from peterrec.components.task_summary import ATTRIBUTE, TaskSummary, finish_task
from peterrec.components.vocabulary import Vocabulary, check_vocabulary, load_vocabulary


def _join_labels(element, label_source: str):
    """Per user: (history, label record) or the rejects of a user/label that cannot be joined."""
    import apache_beam as beam

    from peterrec.components import beam_steps

    user, grouped = element
    histories = list(grouped["history"])
    labels = sorted(grouped["label"], key=lambda r: (r.file_index, r.line_number))
    history = histories[0] if histories else None
    if history is None or not history.items:
        if history is not None:  # the user exists but has nothing left in the source domain
            used = f"; label line {labels[0].line_number} unused" if labels else ""
            yield from beam_steps.drop_user(history, Reject(
                EMPTY_SEQUENCE, label_source, None, user,
                f"no interactions left in the sequence ({history.filtered} of other domains){used}"))
            labels = labels[1:] if labels else labels
            reason, detail = DUPLICATE_USER, f"user {user} already has a label line"
        else:
            reason, detail = UNKNOWN_USER, f"user {user} has no interactions"
        for record in labels:
            yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
                reason, record.source, record.line_number, record.line, detail))
        return
    if not labels:
        yield from beam_steps.drop_user(history, Reject(
            MISSING_LABEL, label_source, None, user, f"user {user} has no line in the attribute table"))
        return
    for record in labels[1:]:
        yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
            DUPLICATE_USER, record.source, record.line_number, record.line,
            f"user {user} already has a label on line {labels[0].line_number}"))
    yield history, labels[0]


def _encode_labelled(pair, item_vocabulary: Vocabulary, label_vocabulary: Vocabulary):
    """(split, serialized example) of a labelled user, or an unknown_label reject."""
    import apache_beam as beam

    from peterrec.components import beam_steps

    history, record = pair
    if record.label not in label_vocabulary:
        yield from beam_steps.drop_user(history, Reject(
            UNKNOWN_LABEL, record.source, record.line_number, record.line,
            f"label {record.label!r} is not in the given label vocabulary"))
        return
    split, example, stats = beam_steps.encode_history(history, item_vocabulary,
                                                      label=label_vocabulary.lookup(record.label))
    yield split, example
    stats[f"label_counts/{split}/{record.label}"] = 1
    yield beam.pvalue.TaggedOutput(beam_steps.STATS, stats)


def run_attribute_task(config: AttributeTaskConfig, examples_dir: str, label_vocabulary_dir: str,
                       rejects_dir: str, vocabulary: Union[Vocabulary, str],
                       beam_pipeline_args: Optional[Sequence[str]] = None,
                       expected_vocabulary_fingerprint: Optional[str] = None,
                       label_vocabulary: Optional[Union[Vocabulary, str]] = None) -> TaskSummary:
    """Builds attribute-task examples (source sequence + class label); returns the summary.

    ``vocabulary`` is the pretraining item vocabulary (object or path), checked against
    ``expected_vocabulary_fingerprint`` when given; ``label_vocabulary`` reuses a label
    vocabulary (labels outside it are rejected) instead of building one.
    """
    import apache_beam as beam

    from peterrec.components import beam_steps

    check_settings(config, "attribute-task")
    item_vocabulary = check_vocabulary(vocabulary, "item", expected_vocabulary_fingerprint, "the attribute task")
    if label_vocabulary is not None:
        label_vocabulary = check_vocabulary(label_vocabulary, "label", what="the attribute task")
    files = source_files(config)
    label_fmt = readers.label_format(config.effective_label_format, config.attribute)
    label_files = label_fmt.files(config.label_source(), "attribute table")
    run = BeamRun(beam_pipeline_args, files, config.chunk_bytes)
    run.start(f"building attribute-task examples ({config.attribute}) from {config.source_path} and "
              f"{config.label_source()} on {run.runner}", examples_dir, label_vocabulary_dir, rejects_dir)
    label_source = ",".join(f.path for f in label_files)

    interactions = run.read_interactions(config, files, need_domain=config.effective_domain is not None)
    histories = (combine_histories(interactions, config, {"source": config.max_len}, *source_buckets(config))
                 | "KeyByUser" >> beam.Map(lambda history: (history.user, history)))
    labels = run.read_table("ReadLabels", label_fmt, label_files, stats_prefix="labels/")
    joined = run.collect({"history": histories, "label": labels}
                         | "JoinLabels" >> beam.CoGroupByKey()
                         | "Pair" >> beam.FlatMap(_join_labels, label_source).with_outputs(
                             beam_steps.REJECTS, beam_steps.STATS, main="pairs"))
    label_vocab = run.vocabulary("label", label_vocabulary_dir, given=label_vocabulary,
                                 tokens=lambda: joined["pairs"] | "Labels" >> beam.Map(lambda pair: pair[1].label))
    encoded = run.collect(joined["pairs"] | "Encode" >> beam.FlatMap(
        _encode_labelled, item_vocabulary, beam.pvalue.AsSingleton(label_vocab)).with_outputs(
            beam_steps.REJECTS, beam_steps.STATS, main="examples"))
    stats, elapsed = run.finish(encoded["examples"], examples_dir, config, rejects_dir, "attribute-task")

    task_vocabulary = label_vocabulary or load_vocabulary(label_vocabulary_dir)
    return finish_task(config, stats, item_vocabulary, task_vocabulary, ATTRIBUTE, run.runner, elapsed, rejects_dir)
