"""Fine-tuning examples for PeterRec tasks, built with Beam like the ingestion.

Two kinds of task (METHOD.md section 1):

- ``run_attribute_task``: user profile prediction. Each example is a user's source
  sequence (ids of the *pretraining* item vocabulary, passed in and checked) plus a class
  ``label`` from an attribute table (MovieLens ``users.dat`` / ``u.user`` gender, age or
  occupation, a generic ``user,label`` CSV, or a PeterRec CSV's target field). The label
  vocabulary is built over the labelled users (or a given one is reused) and written to
  ``label_vocabulary_dir``. Labels of users without a sequence are rejected
  (``unknown_user``), users without a label too (``missing_label``), and so are second
  labels of a user (``duplicate_user``).
- ``run_cold_start_task``: cold-start recommendation in a target domain. Items are split
  into a source and a target domain (a domain column, a rule such as
  ``movielens-genre``, or a PeterRec CSV's two fields). Each example is a user's
  source-domain sequence plus ``target_item_ids`` (ids of a target vocabulary written to
  ``target_vocabulary_dir``), oldest first. Users are split by the hash of their id, so
  evaluation and test users are held out entirely; ``max_target_items`` keeps only the
  earliest target interactions of *train* users (the paper's cold-start users have at
  most 3 or 5).

Both write ``Split-<name>/`` GZIP TFRecords to ``examples_dir``, rejects and
``summary.json`` to ``rejects_dir``, and return a ``TaskSummary``.
"""

import dataclasses
import json
import os
from typing import Dict, Optional, Sequence, Union

from peterrec.components import beam_options, readers
from peterrec.components.ingest import (
    IngestConfig, IngestSummary, _format_table, build_vocabulary_fn, check_reject_fraction,
    check_vocabulary, choose_chunk_bytes, item_table, load_vocabulary, log_summary, progress, rejects_by_reason,
    run_pipeline, source_files)
from peterrec.components.records import (
    DUPLICATE_USER, EMPTY_SEQUENCE, MISSING_LABEL, NO_TARGET_ITEMS, UNKNOWN_LABEL, UNKNOWN_USER,
    IngestError, Reject)
from peterrec.components.vocabulary import Vocabulary

__all__ = ["AttributeTaskConfig", "ColdStartTaskConfig", "TaskSummary", "run_attribute_task",
           "run_cold_start_task"]

ATTRIBUTE = "attribute"
COLD_START = "cold_start"


@dataclasses.dataclass
class AttributeTaskConfig(IngestConfig):
    """An attribute (user profile) task: the ingestion settings plus where labels come from.

    ``label_format``: ``movielens-1m``, ``movielens-100k``, ``csv`` or ``peterrec-csv``
    (default: the source format); ``label_path``: the attribute table (default: the
    MovieLens users table next to the source, or the PeterRec CSV itself); ``attribute``:
    ``gender``, ``age`` or ``occupation`` for MovieLens, the label column's name for CSV.
    """

    label_format: Optional[str] = None
    label_path: Optional[str] = None
    attribute: str = "label"

    @property
    def effective_label_format(self) -> str:
        """The attribute table's format (defaults to the source format)."""
        return self.label_format or self.source_format

    def validate(self) -> None:
        """Checks the ingestion settings and the label source."""
        super().validate()
        fmt = self.effective_label_format
        if fmt not in readers.LABEL_FORMATS:
            raise ValueError(f"label_format {fmt!r} is not one of {sorted(readers.LABEL_FORMATS)}")
        attributes = getattr(readers.LABEL_FORMATS[fmt], "attributes", {})
        if attributes and self.attribute not in attributes:
            raise ValueError(f"attribute {self.attribute!r} is not in {fmt} user tables; "
                             f"choose one of {sorted(attributes)}")
        if fmt == "csv" and not self.label_path:
            raise ValueError("label_format 'csv' needs label_path (a user,label file)")

    def label_source(self) -> str:
        """The path of the attribute table."""
        if self.label_path:
            return self.label_path
        fmt = self.effective_label_format
        if fmt == "peterrec-csv":
            return self.source_path
        return readers.companion_path(self.source_path, readers.LABEL_FORMATS[fmt].default_file)


@dataclasses.dataclass
class ColdStartTaskConfig(IngestConfig):
    """A cold-start task: source-domain sequences, target-domain items as labels.

    ``source_domain``/``target_domain`` name the two domains (the domain column's values,
    or ``source``/``target`` for rules and PeterRec CSVs); ``max_target_items`` caps the
    target items of train users (earliest kept), ``None`` keeps them all.
    """

    source_domain: str = "source"
    target_domain: str = "target"
    max_target_items: Optional[int] = None

    def validate(self) -> None:
        """Checks the ingestion settings and that the data has two domains."""
        super().validate()
        if self.source_domain == self.target_domain:
            raise ValueError(f"source and target domain are both {self.source_domain!r}")
        if self.source_format in readers.ITEM_FORMATS and self.domain_rule is None:
            raise ValueError(f"a cold-start task on {self.source_format} needs a domain_rule "
                             f"(e.g. 'movielens-genre') to split items into two domains")
        if self.max_target_items is not None and (not isinstance(self.max_target_items, int)
                                                  or self.max_target_items < 1):
            raise ValueError(f"max_target_items must be a positive integer or None, got {self.max_target_items!r}")


@dataclasses.dataclass
class TaskSummary(IngestSummary):
    """An ``IngestSummary`` plus the task's own figures.

    ``kept``/``truncated`` include target items for cold-start tasks (see
    ``target_items_kept``/``target_items_truncated``: target items of train users beyond
    ``max_target_items`` count as truncated); ``vocabulary_*`` describe the
    pretraining item vocabulary the examples use, ``task_vocabulary_*`` the label or
    target vocabulary written beside them.
    """

    task: str = ""
    task_vocabulary_kind: str = ""
    task_vocabulary_size: int = 0
    task_vocabulary_fingerprint: str = ""
    label_lines: int = 0
    label_rejected: int = 0
    labels_by_split: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
    target_items_kept: int = 0
    target_items_truncated: int = 0

    def _rows(self):
        rows = super()._rows()
        if self.task == ATTRIBUTE:
            rows.insert(6, ("label lines read", f"{self.label_lines:,}  (rejected {self.label_rejected:,})"))
            for split, counts in self.labels_by_split.items():
                shown = "  ".join(f"{label} {count:,}" for label, count in sorted(counts.items()))
                rows.append((f"  labels in {split}", shown))
        if self.task == COLD_START:
            rows.insert(3, ("    of which target items", f"kept {self.target_items_kept:,}, "
                                                         f"truncated {self.target_items_truncated:,}"))
        rows.append((f"{self.task_vocabulary_kind} vocabulary",
                     f"{self.task_vocabulary_size:,} ids, fingerprint {self.task_vocabulary_fingerprint[:12]}"))
        return rows

    def format_table(self) -> str:
        """The printed summary of a task run."""
        title = f"Task examples ({self.task}): {self.source_format} {self.source_path}"
        return _format_table(title, self._rows(), self.rejects_by_reason, self.runner, self.elapsed_seconds)


# ----------------------------------------------------------------------------- shared steps


def _read_histories(pipeline, config: IngestConfig, files, chunk_bytes, limits, buckets, default_bucket,
                    rejects_parts, stats_parts):
    """Reads interactions and combines them into (user, UserHistory) pairs."""
    import apache_beam as beam

    from peterrec.components import beam_steps

    item_fmt, item_files = item_table(config)
    item_domains = None
    if item_fmt is not None:
        items = pipeline | "ReadItemTable" >> beam_steps.ReadTable(item_fmt, item_files, chunk_bytes,
                                                                   stats_prefix="items/")
        item_domains = items[beam_steps.RECORDS]
        rejects_parts.append(items[beam_steps.REJECTS])
        stats_parts.append(items[beam_steps.STATS])
    fmt = readers.interaction_format(config.source_format)
    need_domain = bool(buckets) and item_fmt is None
    interactions = pipeline | "ReadInteractions" >> beam_steps.ReadTable(
        fmt, files, chunk_bytes, need_domain=need_domain, item_domains=item_domains)
    rejects_parts.append(interactions[beam_steps.REJECTS])
    stats_parts.append(interactions[beam_steps.STATS])
    return (interactions[beam_steps.RECORDS]
            | "LatestPerUser" >> beam.CombinePerKey(beam_steps.SequenceCombineFn(limits, buckets, default_bucket))
            | "ToHistory" >> beam.Map(beam_steps.to_history, config.split_fractions, config.split_salt)
            | "KeyByUser" >> beam.Map(lambda h: (h.user, h)))


def _source_buckets(config: IngestConfig):
    domain = config.effective_domain
    if domain is None:
        return {}, "source"
    return {domain: "source"}, None


def _finish(config: IngestConfig, stats: Dict[str, int], item_vocabulary: Vocabulary, task_vocabulary: Vocabulary,
            task: str, runner: str, elapsed: float, rejects_dir: str) -> TaskSummary:
    from peterrec.components import beam_steps

    labels_by_split: Dict[str, Dict[str, int]] = {}
    for key, value in stats.items():
        if key.startswith("label_counts/"):
            _, split, label = key.split("/", 2)
            labels_by_split.setdefault(split, {})[label] = value
    by_reason = rejects_by_reason(stats)
    summary = TaskSummary(
        read=stats.get("read", 0), kept=stats.get("kept", 0), truncated=stats.get("truncated", 0),
        rejected=stats.get("rejected", 0), rejects_by_reason=by_reason, users=stats.get("users", 0),
        users_by_split={name: stats.get(f"users/{name}", 0) for name in config.split_names},
        vocabulary_size=len(item_vocabulary), vocabulary_fingerprint=item_vocabulary.fingerprint,
        filtered=stats.get("filtered", 0), dropped=stats.get("dropped", 0),
        unknown_items=stats.get("unknown_items", 0), max_len=config.max_len,
        max_reject_fraction=config.max_reject_fraction, source_format=config.source_format,
        source_path=config.source_path, runner=runner, elapsed_seconds=round(elapsed, 3), task=task,
        task_vocabulary_kind=task_vocabulary.kind, task_vocabulary_size=len(task_vocabulary),
        task_vocabulary_fingerprint=task_vocabulary.fingerprint,
        label_lines=stats.get("labels/read", 0), label_rejected=stats.get("labels/rejected", 0),
        labels_by_split={s: labels_by_split[s] for s in config.split_names if s in labels_by_split},
        target_items_kept=stats.get("target_kept", 0), target_items_truncated=stats.get("target_truncated", 0))
    beam_steps.write_text(os.path.join(rejects_dir, beam_steps.SUMMARY_FILE), summary.to_json())
    log_summary(summary.format_table())
    if summary.accounted != summary.read:
        raise IngestError(f"accounting error: kept+truncated+filtered+dropped+rejected = {summary.accounted:,} "
                          f"but {summary.read:,} interactions were read (a bug; please report it)")
    if summary.read == 0:
        raise IngestError(f"no interactions were read from {config.source_path}")
    check_reject_fraction(summary.rejected, summary.read, config.max_reject_fraction, "interaction lines",
                          rejects_dir, by_reason)
    if task == ATTRIBUTE:
        label_bad = summary.label_rejected + sum(by_reason.get(r, 0) for r in (UNKNOWN_USER, DUPLICATE_USER,
                                                                               UNKNOWN_LABEL))
        check_reject_fraction(label_bad, summary.label_lines, config.max_reject_fraction,
                              "attribute table lines", rejects_dir, by_reason)
    if summary.users == 0:
        raise IngestError(f"no {task} example could be built from {config.source_path}; see {rejects_dir}")
    return summary


def _write_vocabulary(vocab, directory: str, label: str):
    import apache_beam as beam

    from peterrec.components import beam_steps

    beam_steps.write_single_file(vocab | f"{label}Json" >> beam.Map(lambda v: json.dumps(v.to_json_dict())),
                                 os.path.join(directory, "vocabulary.json"), f"Write{label}")


# ----------------------------------------------------------------------------- attribute task


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
            yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
                EMPTY_SEQUENCE, label_source, None, user,
                f"no interactions left in the sequence ({history.filtered} of other domains){used}"))
            yield beam.pvalue.TaggedOutput(beam_steps.STATS, beam_steps.dropped_user_stats(history))
            labels = labels[1:] if labels else labels
            reason, detail = DUPLICATE_USER, f"user {user} already has a label line"
        else:
            reason, detail = UNKNOWN_USER, f"user {user} has no interactions"
        for record in labels:
            yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
                reason, record.source, record.line_number, record.line, detail))
        return
    if not labels:
        yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
            MISSING_LABEL, label_source, None, user, f"user {user} has no line in the attribute table"))
        yield beam.pvalue.TaggedOutput(beam_steps.STATS, beam_steps.dropped_user_stats(history))
        return
    for record in labels[1:]:
        yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
            DUPLICATE_USER, record.source, record.line_number, record.line,
            f"user {user} already has a label on line {labels[0].line_number}"))
    yield history, labels[0]


def _encode_labelled(pair, item_vocabulary: Vocabulary, label_vocabulary: Vocabulary):
    """(split, serialized example) of a labelled user, or an unknown_label reject."""
    import apache_beam as beam

    from peterrec.components import beam_steps, example_codec, ids

    history, record = pair
    if record.label not in label_vocabulary:
        yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
            UNKNOWN_LABEL, record.source, record.line_number, record.line,
            f"label {record.label!r} is not in the given label vocabulary"))
        yield beam.pvalue.TaggedOutput(beam_steps.STATS, beam_steps.dropped_user_stats(history))
        return
    item_ids = item_vocabulary.lookup_many(history.items)
    yield history.split, example_codec.encode_example(history.user, item_ids, history.timestamps,
                                                      label=label_vocabulary.lookup(record.label))
    stats = beam_steps.history_stats(history)
    stats["unknown_items"] = sum(1 for i in item_ids if i == ids.UNK_ID)
    stats[f"label_counts/{history.split}/{record.label}"] = 1
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

    try:
        config.validate()
    except ValueError as error:
        raise IngestError(f"invalid attribute-task settings: {error}") from error
    item_vocabulary = check_vocabulary(vocabulary, "item", expected_vocabulary_fingerprint, "the attribute task")
    if label_vocabulary is not None:
        label_vocabulary = check_vocabulary(label_vocabulary, "label", what="the attribute task")
    files = source_files(config)
    label_fmt = readers.label_format(config.effective_label_format, config.attribute)
    label_files = label_fmt.files(config.label_source(), "attribute table")
    chunk_bytes = choose_chunk_bytes(files, config.chunk_bytes, beam_pipeline_args)
    runner = beam_options.describe(beam_pipeline_args)
    progress(f"building attribute-task examples ({config.attribute}) from {config.source_path} and "
             f"{config.label_source()} on {runner}")
    beam_steps.clear_outputs(examples_dir, label_vocabulary_dir, rejects_dir)
    label_source = ",".join(f.path for f in label_files)

    pipeline = beam.Pipeline(options=beam_options.make_pipeline_options(beam_pipeline_args))
    rejects_parts, stats_parts = [], []
    buckets, default = _source_buckets(config)
    histories = _read_histories(pipeline, config, files, chunk_bytes, {"source": config.max_len}, buckets,
                                default, rejects_parts, stats_parts)
    labels = pipeline | "ReadLabels" >> beam_steps.ReadTable(label_fmt, label_files, chunk_bytes,
                                                             stats_prefix="labels/")
    rejects_parts.append(labels[beam_steps.REJECTS])
    stats_parts.append(labels[beam_steps.STATS])
    joined = ({"history": histories, "label": labels[beam_steps.RECORDS]}
              | "JoinLabels" >> beam.CoGroupByKey()
              | "Pair" >> beam.FlatMap(_join_labels, label_source).with_outputs(
                  beam_steps.REJECTS, beam_steps.STATS, main="pairs"))
    rejects_parts.append(joined[beam_steps.REJECTS])
    stats_parts.append(joined[beam_steps.STATS])
    pairs = joined["pairs"]

    if label_vocabulary is None:
        label_vocab = (pairs
                       | "Labels" >> beam.Map(lambda pair: pair[1].label)
                       | "CountLabels" >> beam.combiners.Count.PerElement()
                       | "AllLabelCounts" >> beam.combiners.ToList()
                       | "BuildLabelVocabulary" >> beam.Map(build_vocabulary_fn("label")))
    else:
        label_vocab = pipeline | "GivenLabelVocabulary" >> beam.Create([label_vocabulary])
    _write_vocabulary(label_vocab, label_vocabulary_dir, "LabelVocabulary")

    encoded = pairs | "Encode" >> beam.FlatMap(
        _encode_labelled, item_vocabulary, beam.pvalue.AsSingleton(label_vocab)).with_outputs(
            beam_steps.REJECTS, beam_steps.STATS, main="examples")
    rejects_parts.append(encoded[beam_steps.REJECTS])
    stats_parts.append(encoded[beam_steps.STATS])
    beam_steps.write_examples(encoded["examples"], examples_dir, config.split_names, config.num_shards)

    beam_steps.write_rejects_and_stats(rejects_parts, stats_parts, rejects_dir)

    elapsed = run_pipeline(pipeline, "attribute-task")
    stats = beam_steps.read_stats(rejects_dir)
    task_vocabulary = label_vocabulary or load_vocabulary(label_vocabulary_dir)
    return _finish(config, stats, item_vocabulary, task_vocabulary, ATTRIBUTE, runner, elapsed, rejects_dir)


# ----------------------------------------------------------------------------- cold-start task


def _cold_start_user(keyed, max_target_items: Optional[int], source_label: str):
    """Per user: (history, target items) with train users' targets capped, or a reject."""
    import apache_beam as beam

    from peterrec.components import beam_steps

    _, history = keyed
    reason = None
    if not history.items:
        reason, detail = EMPTY_SEQUENCE, f"no source-domain interactions ({len(history.targets)} target)"
    elif not history.targets:
        reason, detail = NO_TARGET_ITEMS, f"no target-domain interactions ({history.kept} source)"
    if reason is not None:
        yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(reason, source_label, None, history.user, detail))
        yield beam.pvalue.TaggedOutput(beam_steps.STATS, beam_steps.dropped_user_stats(history))
        return
    targets = [event[4] for event in history.targets]  # oldest first
    capped = 0
    if max_target_items is not None and history.split == "train" and len(targets) > max_target_items:
        capped = len(targets) - max_target_items
        targets = targets[:max_target_items]
    yield history, tuple(targets), capped


def _encode_cold_start(triple, item_vocabulary: Vocabulary, target_vocabulary: Vocabulary):
    """(split, serialized example) of a cold-start user (targets outside a given vocabulary dropped)."""
    import apache_beam as beam

    from peterrec.components import beam_steps, example_codec, ids

    history, targets, capped = triple
    known = [t for t in targets if t in target_vocabulary]
    if not known:
        yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
            NO_TARGET_ITEMS, "", None, history.user,
            f"none of the user's {len(targets)} target items is in the given target vocabulary"))
        yield beam.pvalue.TaggedOutput(beam_steps.STATS, beam_steps.dropped_user_stats(history))
        return
    item_ids = item_vocabulary.lookup_many(history.items)
    yield history.split, example_codec.encode_example(
        history.user, item_ids, history.timestamps, target_item_ids=target_vocabulary.lookup_many(known))
    stats = beam_steps.history_stats(history)
    stats["kept"] += len(known)
    stats["truncated"] += capped
    stats["dropped"] = len(targets) - len(known)
    stats["target_kept"] = len(known)
    stats["target_truncated"] = capped
    stats["unknown_items"] = sum(1 for i in item_ids if i == ids.UNK_ID)
    yield beam.pvalue.TaggedOutput(beam_steps.STATS, stats)


def run_cold_start_task(config: ColdStartTaskConfig, examples_dir: str, target_vocabulary_dir: str,
                        rejects_dir: str, vocabulary: Union[Vocabulary, str],
                        beam_pipeline_args: Optional[Sequence[str]] = None,
                        expected_vocabulary_fingerprint: Optional[str] = None,
                        target_vocabulary: Optional[Union[Vocabulary, str]] = None) -> TaskSummary:
    """Builds cold-start examples (source sequence + target items); returns the summary.

    ``vocabulary`` is the pretraining item vocabulary (checked against
    ``expected_vocabulary_fingerprint`` when given). The target vocabulary is built over
    the kept target items of all users (so held-out users' items can be scored), unless
    ``target_vocabulary`` is given.
    """
    import apache_beam as beam

    from peterrec.components import beam_steps

    try:
        config.validate()
    except ValueError as error:
        raise IngestError(f"invalid cold-start settings: {error}") from error
    item_vocabulary = check_vocabulary(vocabulary, "item", expected_vocabulary_fingerprint, "the cold-start task")
    if target_vocabulary is not None:
        target_vocabulary = check_vocabulary(target_vocabulary, "target", what="the cold-start task")
    files = source_files(dataclasses.replace(config, domain=config.source_domain))
    chunk_bytes = choose_chunk_bytes(files, config.chunk_bytes, beam_pipeline_args)
    runner = beam_options.describe(beam_pipeline_args)
    progress(f"building cold-start examples ({config.source_domain} -> {config.target_domain}) from "
             f"{config.source_path} on {runner}")
    beam_steps.clear_outputs(examples_dir, target_vocabulary_dir, rejects_dir)
    source_label = ",".join(f.path for f in files)

    pipeline = beam.Pipeline(options=beam_options.make_pipeline_options(beam_pipeline_args))
    rejects_parts, stats_parts = [], []
    buckets = {config.source_domain: "source", config.target_domain: "target"}
    histories = _read_histories(pipeline, config, files, chunk_bytes, {"source": config.max_len, "target": None},
                                buckets, None, rejects_parts, stats_parts)
    users = histories | "Targets" >> beam.FlatMap(
        _cold_start_user, config.max_target_items, source_label).with_outputs(
            beam_steps.REJECTS, beam_steps.STATS, main="users")
    rejects_parts.append(users[beam_steps.REJECTS])
    stats_parts.append(users[beam_steps.STATS])

    if target_vocabulary is None:
        target_vocab = (users["users"]
                        | "TargetItems" >> beam.FlatMap(lambda triple: triple[1])
                        | "CountTargets" >> beam.combiners.Count.PerElement()
                        | "AllTargetCounts" >> beam.combiners.ToList()
                        | "BuildTargetVocabulary" >> beam.Map(build_vocabulary_fn("target")))
    else:
        target_vocab = pipeline | "GivenTargetVocabulary" >> beam.Create([target_vocabulary])
    _write_vocabulary(target_vocab, target_vocabulary_dir, "TargetVocabulary")

    encoded = users["users"] | "Encode" >> beam.FlatMap(
        _encode_cold_start, item_vocabulary, beam.pvalue.AsSingleton(target_vocab)).with_outputs(
            beam_steps.REJECTS, beam_steps.STATS, main="examples")
    rejects_parts.append(encoded[beam_steps.REJECTS])
    stats_parts.append(encoded[beam_steps.STATS])
    beam_steps.write_examples(encoded["examples"], examples_dir, config.split_names, config.num_shards)

    beam_steps.write_rejects_and_stats(rejects_parts, stats_parts, rejects_dir)

    elapsed = run_pipeline(pipeline, "cold-start")
    stats = beam_steps.read_stats(rejects_dir)
    task_vocabulary = target_vocabulary or load_vocabulary(target_vocabulary_dir)
    return _finish(config, stats, item_vocabulary, task_vocabulary, COLD_START, runner, elapsed, rejects_dir)
