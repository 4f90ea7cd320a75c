"""Sequence ingestion with Apache Beam: raw interaction logs -> sequence examples + vocabulary.

``run_ingestion(config, examples_dir, vocabulary_dir, rejects_dir)`` reads a source
(MovieLens-1M/100K, a generic CSV with a header, or the original PeterRec CSV), orders
each user's interactions by timestamp (ties by file and line, so runs are reproducible
on any runner), keeps the user's whole history (or the most recent ``max_len`` when a cap
is set: how long a context a model reads is a training and serving choice, not this one),
splits users by a hash of their id (``splits.assign_split``: no user is in two splits),
builds the item vocabulary over every interaction read of the kept domain, truncated ones
included (ids by frequency after the reserved ids; items seen fewer than
``min_item_count`` times map to the unknown id and are counted), unless one is given,
and writes:

- ``examples_dir/Split-<name>/data_tfrecord-*.gz``: GZIP TFRecords of ``tf.train.Example``
  in ``example_format`` (``user_id``, ``item_ids``, ``timestamps``);
- ``vocabulary_dir/vocabulary.json``: the ``Vocabulary`` artifact;
- ``rejects_dir/rejects-*.jsonl``: one JSON line per reject (reason, source file, line
  number, the offending line, detail), and ``rejects_dir/summary.json``.

Every interaction read is accounted for: ``kept + truncated + filtered + dropped +
rejected == read`` (``filtered``: other domains when ``domain`` is set; ``dropped``:
interactions of users rejected as a whole, used by the task pipelines). Without a domain
filter both are 0 and ``kept + truncated + rejected == read``. A run whose rejected
fraction exceeds ``max_reject_fraction`` raises ``IngestError`` after writing the
rejects and the summary, so the reasons can be inspected.
"""

import dataclasses
import json
import logging
import os
import re
import time
from typing import Dict, List, Optional, Sequence, Tuple

from peterrec.components import beam_options, readers
from peterrec.components.records import EMPTY_SEQUENCE, USER_LEVEL_REASONS, IngestError, Reject
from peterrec.components.vocabulary import Vocabulary, VocabularyError

__all__ = ["IngestConfig", "IngestSummary", "IngestError", "run_ingestion", "read_summary"]

log = logging.getLogger(__name__)
summary_log = logging.getLogger("peterrec.components.summary")

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_SPLIT_FRACTIONS = (("train", 0.8), ("eval", 0.1), ("test", 0.1))


def _normalise_fractions(value) -> Tuple[Tuple[str, float], ...]:
    if isinstance(value, dict):
        value = list(value.items())
    try:
        return tuple((str(name), float(fraction)) for name, fraction in value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"split_fractions must be (name, fraction) pairs, got {value!r}") from error


@dataclasses.dataclass
class IngestConfig:
    """What to ingest and how (see the module docstring).

    ``source_format``: ``movielens-1m``, ``movielens-100k``, ``csv`` or ``peterrec-csv``;
    ``source_path``: a MovieLens folder, or a file, folder or glob of CSV files;
    ``domain``: keep only interactions of this domain in the sequences (e.g. ``source``
    for pretraining on source items before a cold-start task); ``domain_rule``: how
    MovieLens items get a domain (``movielens-genre``), generic CSVs use their ``domain``
    column and PeterRec CSVs their two fields (there ``domain`` defaults to ``source``).
    """

    source_format: str
    source_path: str
    max_len: Optional[int] = None    # cap on the items kept per user; None keeps whole histories
    split_fractions: Tuple[Tuple[str, float], ...] = DEFAULT_SPLIT_FRACTIONS
    split_salt: str = ""
    max_reject_fraction: float = 0.01
    min_item_count: int = 1
    domain: Optional[str] = None
    domain_rule: Optional[str] = None
    num_shards: int = 0
    chunk_bytes: int = 0          # bytes per read chunk; 0 = sized from the input and the workers

    def __post_init__(self):
        self.split_fractions = _normalise_fractions(self.split_fractions)

    @property
    def split_names(self) -> Tuple[str, ...]:
        """The split names, in the order of ``split_fractions``."""
        return tuple(name for name, _ in self.split_fractions)

    @property
    def effective_domain(self) -> Optional[str]:
        """The domain kept in sequences (PeterRec CSVs keep their source field by default)."""
        if self.domain is None and self.source_format == "peterrec-csv":
            return "source"
        return self.domain

    def validate(self) -> None:
        """Raises ValueError with a clear message on settings that cannot work."""
        if self.source_format not in readers.INTERACTION_FORMATS:
            raise ValueError(f"source_format {self.source_format!r} is not one of "
                             f"{sorted(readers.INTERACTION_FORMATS)}")
        if not self.source_path:
            raise ValueError("source_path is empty")
        if self.max_len is not None and (isinstance(self.max_len, bool) or not isinstance(self.max_len, int)
                                         or self.max_len < 1):
            raise ValueError(f"max_len must be a positive integer or None (no cap), got {self.max_len!r}")
        names = self.split_names
        if not names:
            raise ValueError("split_fractions is empty")
        if len(set(names)) != len(names):
            raise ValueError(f"split names repeat: {list(names)}")
        for name, fraction in self.split_fractions:
            if not _SPLIT_NAME.match(name):
                raise ValueError(f"split name {name!r} may only use letters, digits, '_' and '-'")
            if fraction < 0:
                raise ValueError(f"split {name!r} has a negative fraction {fraction}")
        if sum(f for _, f in self.split_fractions) <= 0:
            raise ValueError("split fractions must add up to a positive number")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise ValueError(f"max_reject_fraction must be within [0, 1], got {self.max_reject_fraction}")
        if not isinstance(self.min_item_count, int) or self.min_item_count < 1:
            raise ValueError(f"min_item_count must be an integer >= 1, got {self.min_item_count!r}")
        if not isinstance(self.num_shards, int) or self.num_shards < 0:
            raise ValueError(f"num_shards must be an integer >= 0 (0 lets Beam choose), got {self.num_shards!r}")
        if self.chunk_bytes < 0:
            raise ValueError(f"chunk_bytes must be >= 0, got {self.chunk_bytes}")
        if self.domain_rule is not None:
            if self.domain_rule not in readers.DOMAIN_RULES:
                raise ValueError(f"domain_rule {self.domain_rule!r} is not one of {sorted(readers.DOMAIN_RULES)}")
            if self.source_format not in readers.ITEM_FORMATS:
                raise ValueError(f"domain_rule {self.domain_rule!r} needs an item table, which "
                                 f"{self.source_format!r} sources do not have; generic CSVs use their "
                                 "'domain' column, PeterRec CSVs their source/target fields")
        if self.domain is not None and self.source_format in readers.ITEM_FORMATS and self.domain_rule is None:
            raise ValueError(f"domain={self.domain!r} needs a domain_rule for {self.source_format!r} "
                             f"(MovieLens has no domain column), e.g. domain_rule='movielens-genre'")

    def to_json(self) -> str:
        """Serialises the config (TFX execution properties, logs)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IngestConfig":
        """Reads a config written by ``to_json`` (unknown keys are an error)."""
        return cls(**json.loads(text))


@dataclasses.dataclass
class IngestSummary:
    """The figures of one ingestion run; ``summary.json`` in the rejects folder holds them.

    ``read``/``kept``/``truncated``/``filtered``/``dropped``/``rejected`` count
    interactions (``kept + truncated + filtered + dropped + rejected == read``);
    ``rejects_by_reason`` counts reject entries: rejected lines, and user-level entries
    (``records.USER_LEVEL_REASONS``, e.g. ``empty_sequence``) and table lines (item or
    label tables) that are not interactions.
    """

    read: int
    kept: int
    truncated: int
    rejected: int
    rejects_by_reason: Dict[str, int]
    users: int
    users_by_split: Dict[str, int]
    vocabulary_size: int
    vocabulary_fingerprint: str
    filtered: int = 0
    dropped: int = 0
    unknown_items: int = 0       # kept items that map to the unknown id (reused vocabulary, min_item_count)
    rare_items: int = 0          # distinct items below min_item_count, left out of the vocabulary
    max_len: Optional[int] = None
    max_reject_fraction: float = 0.0
    source_format: str = ""
    source_path: str = ""
    runner: str = ""
    elapsed_seconds: float = 0.0

    @property
    def reject_fraction(self) -> float:
        """Rejected interactions over interactions read."""
        return self.rejected / self.read if self.read else 0.0

    @property
    def accounted(self) -> int:
        """kept + truncated + filtered + dropped + rejected: equals ``read`` in a sound run."""
        return self.kept + self.truncated + self.filtered + self.dropped + self.rejected

    def to_json(self) -> str:
        """Serialises the summary as JSON."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IngestSummary":
        """Reads a summary written by ``to_json`` (keys this version does not know are ignored)."""
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def _rows(self) -> List[Tuple[str, str]]:
        pct = f"{100 * self.reject_fraction:.3f}% of read, max {100 * self.max_reject_fraction:.3f}%"
        rows = [("interactions read", f"{self.read:,}"),
                ("  kept", f"{self.kept:,}"),
                (f"  truncated ({'no cap' if self.max_len is None else f'cap max_len={self.max_len}'})",
                 f"{self.truncated:,}"),
                ("  filtered (other domains)", f"{self.filtered:,}"),
                ("  dropped (with rejected users)", f"{self.dropped:,}"),
                ("  rejected", f"{self.rejected:,}  ({pct})")]
        splits = "  ".join(f"{name} {count:,}" for name, count in self.users_by_split.items())
        rows.append(("users", f"{self.users:,}  ({splits})"))
        rows.append(("item vocabulary",
                     f"{self.vocabulary_size:,} ids, fingerprint {self.vocabulary_fingerprint[:12]}"))
        if self.rare_items:
            rows.append(("  items below min_item_count", f"{self.rare_items:,} (mapped to <unk>)"))
        if self.unknown_items:
            rows.append(("  kept interactions mapped to <unk>", f"{self.unknown_items:,}"))
        return rows

    def format_table(self) -> str:
        """The printed summary: counts, users by split, vocabulary, rejects by reason."""
        title = f"Ingestion summary: {self.source_format} {self.source_path}".rstrip()
        return _format_table(title, self._rows(), self.rejects_by_reason, self.runner, self.elapsed_seconds)


def _format_table(title: str, rows: Sequence[Tuple[str, str]], by_reason: Dict[str, int],
                  runner: str, elapsed: float) -> str:
    width = max(len(name) for name, _ in rows) + 2
    lines = [title, "-" * max(len(title), 40)]
    lines += [f"{name:<{width}}{value}" for name, value in rows]
    if by_reason:
        lines.append("rejects by reason")
        for reason, count in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            kind = " (users)" if reason in USER_LEVEL_REASONS else ""
            lines.append(f"  {reason + kind:<{width - 2}}{count:,}")
    else:
        lines.append("rejects by reason  none")
    if runner:
        lines.append(f"ran on {runner} in {elapsed:.1f} s")
    return "\n".join(lines)


def read_summary(rejects_dir: str) -> IngestSummary:
    """Reads the ``summary.json`` a run wrote into its rejects folder."""
    from apache_beam.io.filesystems import FileSystems

    from peterrec.components import beam_steps

    with FileSystems.open(os.path.join(rejects_dir, beam_steps.SUMMARY_FILE)) as handle:
        return IngestSummary.from_json(handle.read().decode("utf-8"))


# ----------------------------------------------------------------------------- helpers shared with tasks


def choose_chunk_bytes(files: Sequence[readers.SourceFile], requested: int,
                       beam_pipeline_args: Optional[Sequence[str]]) -> int:
    """Chunk size: as asked, else about four chunks per local worker, within [1 MiB, 64 MiB]."""
    if requested:
        return requested
    total = sum(f.size for f in files)
    workers = beam_options.available_cpus() if beam_options.is_local_direct(beam_pipeline_args) else 16
    return int(min(64 << 20, max(1 << 20, total // max(1, 4 * workers))))


def source_files(config: IngestConfig) -> List[readers.SourceFile]:
    """Lists the source files, checking that a domain filter has a domain column."""
    fmt = readers.interaction_format(config.source_format)
    files = fmt.files(config.source_path, "source")
    if config.source_format == "csv" and config.domain is not None:
        missing = [f.path for f in files if f.positions[3] is None]
        if missing:
            raise IngestError(f"domain={config.domain!r} needs a 'domain' column, which {missing[0]} has not "
                              f"(header {list(files[0].columns)})")
    return files


def item_table(config: IngestConfig):
    """Returns (item format, item files) for a domain rule, or (None, None)."""
    if config.domain_rule is None:
        return None, None
    fmt = readers.item_format(config.source_format, config.domain_rule)
    folder = config.source_path if readers._is_dir(config.source_path) else os.path.dirname(config.source_path)
    return fmt, fmt.files(folder, "item table")


def build_vocabulary_fn(kind: str, min_count: int = 1):
    """Returns a function that builds a vocabulary from a list of (token, count) pairs."""
    def build(token_counts):
        return Vocabulary.from_counts(kind, dict(token_counts), min_count=min_count)
    return build


def check_vocabulary(vocabulary, kind: str, expected_fingerprint: Optional[str] = None,
                     what: str = "this run") -> Vocabulary:
    """Loads (from a path) and checks a vocabulary: its kind and, if given, its fingerprint."""
    if isinstance(vocabulary, str):
        vocabulary = load_vocabulary(vocabulary)
    if not isinstance(vocabulary, Vocabulary):
        raise IngestError(f"expected a Vocabulary or a path to one, got {type(vocabulary).__name__}")
    if vocabulary.kind != kind:
        raise VocabularyError(f"{what} needs a {kind} vocabulary, got a {vocabulary.kind} vocabulary")
    if expected_fingerprint is not None:
        vocabulary.check(expected_fingerprint, what=what)
    return vocabulary


def load_vocabulary(path: str) -> Vocabulary:
    """Loads a vocabulary (folder or file) through Beam's file systems, without TensorFlow."""
    from apache_beam.io.filesystems import FileSystems

    if not path.endswith(".json"):
        path = os.path.join(path, "vocabulary.json")
    if not FileSystems.exists(path):
        raise VocabularyError(f"no vocabulary at {path}")
    with FileSystems.open(path) as handle:
        try:
            data = json.loads(handle.read().decode("utf-8"))
        except ValueError as error:
            raise VocabularyError(f"{path}: not valid JSON ({error})") from error
    return Vocabulary.from_json_dict(data, source=path)


def report_rejects(rejects_dir: str, limit: int = 5) -> str:
    """A few rejects of a run, formatted for an error message or the console."""
    from peterrec.components import beam_steps

    shown = []
    for reject in beam_steps.read_rejects(rejects_dir, limit=limit):
        where = f"{reject.source}:{reject.line_number}" if reject.line_number is not None else reject.source
        shown.append(f"  [{reject.reason}] {where}: {reject.line[:120]!r} {reject.detail}".rstrip())
    return "\n".join(shown)


def check_reject_fraction(rejected: int, read: int, max_fraction: float, what: str, rejects_dir: str,
                          by_reason: Dict[str, int]) -> None:
    """Raises IngestError when rejected/read exceeds the maximum (after outputs are written)."""
    if read and rejected / read > max_fraction:
        reasons = ", ".join(f"{r}: {c:,}" for r, c in sorted(by_reason.items(), key=lambda kv: -kv[1])
                            if r not in USER_LEVEL_REASONS)
        raise IngestError(
            f"{rejected:,} of {read:,} {what} were rejected ({100 * rejected / read:.2f}%), more than "
            f"max_reject_fraction={max_fraction} allows. Reasons: {reasons}. Every reject is listed in "
            f"{rejects_dir} (summary.json, rejects-*.jsonl); examples:\n{report_rejects(rejects_dir)}\n"
            "Fix the input or raise max_reject_fraction (--max-reject-fraction) if these lines are expected.")


def rejects_by_reason(stats: Dict[str, int]) -> Dict[str, int]:
    """Extracts the per-reason counts from the run's stats."""
    return {key.split("/", 1)[1]: value for key, value in stats.items() if key.startswith("rejects/")}


def run_pipeline(pipeline, label: str) -> float:
    """Runs a Beam pipeline to completion and returns its wall time in seconds."""
    started = time.time()
    progress(f"running the {label} pipeline...")
    result = pipeline.run()
    result.wait_until_finish()
    state = str(getattr(result, "state", "DONE"))
    if "FAILED" in state or "CANCELLED" in state:
        raise IngestError(f"the {label} pipeline ended in state {state}")
    elapsed = time.time() - started
    progress(f"the {label} pipeline finished in {elapsed:.1f} s")
    return elapsed


def progress(message: str) -> None:
    """Progress output of long runs (the CLI shows INFO logs)."""
    log.info(message)


def log_summary(table: str) -> None:
    """Logs a run's summary table (the CLI prints it on stdout instead)."""
    summary_log.info("\n%s", table)


# ----------------------------------------------------------------------------- the pipeline


def _route_history(history, empty_source: str):
    """Non-empty histories to the main output; users without source items to rejects."""
    import apache_beam as beam

    from peterrec.components import beam_steps

    if history.items:
        yield history
    else:
        yield beam.pvalue.TaggedOutput(beam_steps.REJECTS, Reject(
            EMPTY_SEQUENCE, empty_source, None, history.user,
            f"no interactions left in the sequence ({history.filtered} of other domains)"))
        yield beam.pvalue.TaggedOutput(beam_steps.STATS, beam_steps.dropped_user_stats(history))


def _item_of_domain(keyed_event, domain: Optional[str]):
    """The item of a ``(user, event)`` pair when the event is of the kept domain (all without one)."""
    event = keyed_event[1]
    if domain is None or event[5] == domain:
        yield event[4]


def _rare_item_stats(item_count, min_count: int) -> Dict[str, int]:
    """Counts an item left out of the vocabulary for being seen fewer than ``min_count`` times."""
    return {"rare_items": int(item_count[1] < min_count)}


def _encode_history(history, vocabulary: Vocabulary):
    """(split, serialized example) of a user's sequence, plus its counters."""
    import apache_beam as beam

    from peterrec.components import beam_steps, example_codec, ids

    item_ids = vocabulary.lookup_many(history.items)
    unknown = sum(1 for i in item_ids if i == ids.UNK_ID)
    yield history.split, example_codec.encode_example(history.user, item_ids, history.timestamps)
    stats = beam_steps.history_stats(history)
    stats["unknown_items"] = unknown
    yield beam.pvalue.TaggedOutput(beam_steps.STATS, stats)


def run_ingestion(config: IngestConfig, examples_dir: str, vocabulary_dir: str, rejects_dir: str,
                  beam_pipeline_args: Optional[Sequence[str]] = None,
                  vocabulary: Optional[Vocabulary] = None) -> IngestSummary:
    """Runs the ingestion pipeline and returns its summary (see the module docstring).

    With ``vocabulary`` (an item Vocabulary or a path to one) the ids come from it and it
    is written unchanged to ``vocabulary_dir``; otherwise one is built over the kept items.
    Raises IngestError on a missing source, bad settings or too many rejects.
    """
    import apache_beam as beam

    from peterrec.components import beam_steps

    try:
        config.validate()
    except ValueError as error:
        raise IngestError(f"invalid ingestion settings: {error}") from error
    if vocabulary is not None:
        vocabulary = check_vocabulary(vocabulary, "item", what="ingestion")
    fmt = readers.interaction_format(config.source_format)
    files = source_files(config)
    item_fmt, item_files = item_table(config)
    domain = config.effective_domain
    chunk_bytes = choose_chunk_bytes(files, config.chunk_bytes, beam_pipeline_args)
    runner = beam_options.describe(beam_pipeline_args)
    progress(f"ingesting {config.source_format} from {config.source_path}: {len(files)} file(s), "
             f"{sum(f.size for f in files) / 1e6:.1f} MB, on {runner}")
    beam_steps.clear_outputs(examples_dir, vocabulary_dir, rejects_dir)
    source_label = ",".join(f.path for f in files)

    pipeline = beam.Pipeline(options=beam_options.make_pipeline_options(beam_pipeline_args))
    rejects_parts, stats_parts = [], []
    item_domains = None
    if item_fmt is not None:
        items = pipeline | "ReadItemTable" >> beam_steps.ReadTable(item_fmt, item_files, chunk_bytes,
                                                                   stats_prefix="items/")
        item_domains = items[beam_steps.RECORDS]
        rejects_parts.append(items[beam_steps.REJECTS])
        stats_parts.append(items[beam_steps.STATS])
    interactions = pipeline | "ReadInteractions" >> beam_steps.ReadTable(
        fmt, files, chunk_bytes, need_domain=domain is not None and item_fmt is None, item_domains=item_domains)
    rejects_parts.append(interactions[beam_steps.REJECTS])
    stats_parts.append(interactions[beam_steps.STATS])

    combine = (beam_steps.SequenceCombineFn({"source": config.max_len})
               if domain is None else
               beam_steps.SequenceCombineFn({"source": config.max_len}, {domain: "source"}, default_bucket=None))
    routed = (interactions[beam_steps.RECORDS]
              | "LatestPerUser" >> beam.CombinePerKey(combine)
              | "ToHistory" >> beam.Map(beam_steps.to_history, config.split_fractions, config.split_salt)
              | "DropEmpty" >> beam.FlatMap(_route_history, source_label).with_outputs(
                  beam_steps.REJECTS, beam_steps.STATS, main="histories"))
    histories = routed["histories"]
    rejects_parts.append(routed[beam_steps.REJECTS])
    stats_parts.append(routed[beam_steps.STATS])

    if vocabulary is None:
        # Every interaction read of the kept domain counts, truncated ones too, so a cap never
        # hides an item from the vocabulary.
        item_counts = (interactions[beam_steps.RECORDS]
                       | "DomainItems" >> beam.FlatMap(_item_of_domain, domain)
                       | "CountItems" >> beam.combiners.Count.PerElement())
        stats_parts.append(item_counts | "RareItems" >> beam.Map(_rare_item_stats, config.min_item_count))
        vocab = (item_counts
                 | "AllItemCounts" >> beam.combiners.ToList()
                 | "BuildVocabulary" >> beam.Map(build_vocabulary_fn("item", config.min_item_count)))
    else:
        vocab = pipeline | "GivenVocabulary" >> beam.Create([vocabulary])
    beam_steps.write_single_file(vocab | "VocabularyJson" >> beam.Map(lambda v: json.dumps(v.to_json_dict())),
                                 os.path.join(vocabulary_dir, "vocabulary.json"), "WriteVocabulary")
    vocab_stats = vocab | "VocabularyStats" >> beam.Map(lambda v: {"vocabulary_size": len(v)})
    stats_parts.append(vocab_stats)

    encoded = histories | "Encode" >> beam.FlatMap(
        _encode_history, beam.pvalue.AsSingleton(vocab)).with_outputs(beam_steps.STATS, main="examples")
    stats_parts.append(encoded[beam_steps.STATS])
    beam_steps.write_examples(encoded["examples"], examples_dir, config.split_names, config.num_shards)

    beam_steps.write_rejects_and_stats(rejects_parts, stats_parts, rejects_dir)

    elapsed = run_pipeline(pipeline, "ingestion")
    stats = beam_steps.read_stats(rejects_dir)
    final_vocabulary = vocabulary or load_vocabulary(vocabulary_dir)
    by_reason = rejects_by_reason(stats)
    summary = IngestSummary(
        read=stats.get("read", 0), kept=stats.get("kept", 0), truncated=stats.get("truncated", 0),
        rejected=stats.get("rejected", 0), rejects_by_reason=by_reason, users=stats.get("users", 0),
        users_by_split={name: stats.get(f"users/{name}", 0) for name in config.split_names},
        vocabulary_size=len(final_vocabulary), vocabulary_fingerprint=final_vocabulary.fingerprint,
        filtered=stats.get("filtered", 0), dropped=stats.get("dropped", 0),
        unknown_items=stats.get("unknown_items", 0), rare_items=stats.get("rare_items", 0), max_len=config.max_len,
        max_reject_fraction=config.max_reject_fraction, source_format=config.source_format,
        source_path=config.source_path, runner=runner, elapsed_seconds=round(elapsed, 3))
    beam_steps.write_text(os.path.join(rejects_dir, beam_steps.SUMMARY_FILE), summary.to_json())
    log_summary(summary.format_table())
    if summary.accounted != summary.read:
        raise IngestError(f"accounting error: kept+truncated+filtered+dropped+rejected = {summary.accounted:,} "
                          f"but {summary.read:,} interactions were read (a bug; please report it)")
    if summary.read == 0:
        raise IngestError(f"no interactions were read from {config.source_path}")
    check_reject_fraction(summary.rejected, summary.read, config.max_reject_fraction, "interaction lines",
                          rejects_dir, by_reason)
    if summary.users == 0:
        raise IngestError(f"no user has a non-empty sequence in {config.source_path} (domain={domain!r})")
    return summary
