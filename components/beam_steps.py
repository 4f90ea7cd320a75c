"""Beam building blocks shared by the ingestion and the task-example pipelines.

- ``ReadTable``: files -> parsed records (keyed) + ``Reject``s + per-chunk counts, reading
  byte-range chunks in parallel with exact line numbers (see ``source_chunks``);
- ``SequenceCombineFn``: per user, the most recent ``max_len`` events of each domain
  bucket (a combiner, so partial results are merged before the shuffle; its accumulator
  is compact columns, ``event_columns``);
- ``to_history``: the combined events -> a ``UserHistory`` with its split and counts;
- ``SumDictsFn`` for the run's counters, and writers for examples, rejects and JSON files.

Counts travel as small dicts that are summed into one JSON file, so the driver reads
exact figures on any runner; Beam metrics counters mirror them for runner UIs.
"""

import json
import os
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam

from peterrec.components import event_columns, example_format, output_files, source_chunks, splits
from peterrec.components import vocabulary as vocabulary_lib
from peterrec.components.event_columns import EventColumns
from peterrec.components.line_format import LineFormat
from peterrec.components.records import (
    MISSING_DOMAIN, UNKNOWN_ITEM, Interaction, LabelRecord, Reject)

METRICS_NAMESPACE = "peterrec.ingest"
RECORDS, REJECTS, STATS = "records", "rejects", "stats"

# An event inside the pipeline: (timestamp, file index, line number, position, item, domain).
# Tuples compare by their first four fields, which are unique per event: the stable order.
Event = Tuple[int, int, int, int, str, Optional[str]]


class ParseChunkFn(beam.DoFn):
    """Parses one chunk: records to the main output, rejects and counts to tagged outputs.

    Interactions come out as ``(user, Event)``, labels as ``(user, LabelRecord)``, item
    table rows as ``(item, domain)``. With ``item_domains`` (a side input, from a domain
    rule) each interaction gets its item's domain, and items missing from the item table
    are rejected; with ``need_domain`` an interaction without a domain is rejected.
    """

    def __init__(self, fmt: LineFormat, need_domain: bool = False, stats_prefix: str = ""):
        self._fmt = fmt
        self._need_domain = need_domain
        self._prefix = stats_prefix

    def process(self, chunk: source_chunks.Chunk, newlines_before: Dict[str, int],
                item_domains: Optional[Dict[str, str]] = None):
        fmt, parse_raw = self._fmt, self._fmt.parse_raw
        check = item_domains is not None or self._need_domain
        skip_header = fmt.has_header
        source = chunk.file
        lines = read = rejected = 0
        for line_number, raw in source_chunks.iter_chunk_lines(chunk, newlines_before[chunk.key]):
            if skip_header and line_number == 1:
                continue
            lines += 1
            records, reject = parse_raw(raw, source, line_number)
            if check and reject is None and records and type(records[0]) is Interaction:
                records, reject = self._check_domains(records, raw, source, line_number, item_domains)
            if reject is not None:
                read += 1
                rejected += 1
                yield beam.pvalue.TaggedOutput(REJECTS, reject)
                continue
            read += len(records)
            for record in records:
                kind = type(record)
                if kind is Interaction:
                    yield record.user, (record.timestamp, record.file_index, record.line_number,
                                        record.position, record.item, record.domain)
                elif kind is LabelRecord:
                    yield record.user, record
                else:
                    yield record.item, record.domain
        prefix = self._prefix
        yield beam.pvalue.TaggedOutput(STATS, {prefix + "lines": lines, prefix + "read": read,
                                               prefix + "rejected": rejected})

    def _check_domains(self, records, raw, source, line_number, item_domains):
        if item_domains is None and not self._need_domain:
            return records, None
        checked = []
        for record in records:
            if item_domains is not None:
                domain = item_domains.get(record.item)
                if domain is None:
                    return [], Reject(UNKNOWN_ITEM, source.path, line_number, self._fmt.decode(raw),
                                      f"item {record.item} is not in the item table, so its domain is unknown")
                record = record._replace(domain=domain)
            elif record.domain is None:
                return [], Reject(MISSING_DOMAIN, source.path, line_number, self._fmt.decode(raw),
                                  "the domain field is empty")
            checked.append(record)
        return checked, None


class ReadTable(beam.PTransform):
    """Reads a table's files in chunks: returns a DoOutputsTuple (records, rejects, stats)."""

    def __init__(self, fmt: LineFormat, files: Sequence[source_chunks.SourceFile],
                 chunk_bytes: int, need_domain: bool = False, item_domains=None, stats_prefix: str = ""):
        super().__init__()
        self._fmt = fmt
        self._prefix = stats_prefix
        self._chunks = source_chunks.plan_chunks(files, chunk_bytes)
        self._need_domain = need_domain
        self._item_domains = item_domains

    def expand(self, pbegin):
        chunk_list = self._chunks
        chunks = pbegin | "Chunks" >> beam.Create(chunk_list, reshuffle=False) | "Spread" >> beam.Reshuffle()
        newlines_before = (
            chunks
            | "CountNewlines" >> beam.Map(lambda c: (c.key, source_chunks.count_newlines(c)))
            | "AllCounts" >> beam.combiners.ToDict()
            | "NewlinesBefore" >> beam.Map(lambda counts: source_chunks.newlines_before_chunks(chunk_list, counts)))
        side = {"newlines_before": beam.pvalue.AsSingleton(newlines_before)}
        if self._item_domains is not None:
            side["item_domains"] = beam.pvalue.AsDict(self._item_domains)
        parse = ParseChunkFn(self._fmt, self._need_domain, self._prefix)
        return chunks | "Parse" >> beam.ParDo(parse, **side).with_outputs(REJECTS, STATS, main=RECORDS)


class SequenceCombineFn(beam.CombineFn):
    """Per user: counts all events and keeps, per domain bucket, the latest ``limit`` ones.

    ``buckets`` maps a record's domain to a bucket name (``"source"``, ``"target"``);
    ``default_bucket`` takes the other domains (``None``: they are counted as filtered).
    A bucket's limit of ``None`` keeps everything. The output is
    ``(total, filtered, {bucket: EventColumns sorted oldest first})``.

    The accumulator is ``[total, filtered, {bucket: EventColumns}]``: 32 bytes an event
    plus each distinct item once (``event_columns``), and with a limit at most
    ``2 * limit + 16`` events a bucket, so a user with a very long raw history costs no
    more than the cap (or, without one, than the compact history that is kept).
    """

    def __init__(self, limits: Dict[str, Optional[int]], buckets: Optional[Dict[str, str]] = None,
                 default_bucket: Optional[str] = "source"):
        self._limits = dict(limits)
        self._buckets = dict(buckets or {})
        self._default = default_bucket

    def create_accumulator(self):
        return [0, 0, {}]

    def _trim(self, bucket: str, events: EventColumns) -> EventColumns:
        limit = self._limits.get(bucket)
        if limit is None or len(events) <= limit:
            return events
        return events.keep_latest(limit)

    def add_input(self, accumulator, event):
        accumulator[0] += 1
        bucket = self._buckets.get(event[5], self._default)
        if bucket is None:
            accumulator[1] += 1
            return accumulator
        events = accumulator[2].get(bucket)
        if events is None:
            events = accumulator[2][bucket] = EventColumns()
        events.append(event)
        limit = self._limits.get(bucket)
        if limit is not None and len(events) > 2 * limit + 16:
            accumulator[2][bucket] = self._trim(bucket, events)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        parts: Dict[str, List[EventColumns]] = {}
        for total, filtered, by_bucket in accumulators:
            merged[0] += total
            merged[1] += filtered
            for bucket, events in by_bucket.items():
                parts.setdefault(bucket, []).append(events)
        merged[2] = {b: self._trim(b, event_columns.merge(p)) for b, p in parts.items()}
        return merged

    def compact(self, accumulator):
        accumulator[2] = {b: self._trim(b, e) for b, e in accumulator[2].items()}
        return accumulator

    def extract_output(self, accumulator):
        total, filtered, by_bucket = accumulator
        return total, filtered, {b: e.keep_latest(self._limits.get(b)) for b, e in by_bucket.items()}


class UserHistory(NamedTuple):
    """One user's combined events: source items (oldest first) and optional target events."""

    user: str
    split: str
    items: Tuple[str, ...]
    timestamps: Tuple[int, ...]
    total: int          # every interaction of the user that was read and parsed
    filtered: int       # interactions of other domains
    truncated: int      # source interactions older than the kept max_len
    targets: Tuple[Event, ...] = ()

    @property
    def kept(self) -> int:
        """Source interactions kept in the sequence."""
        return len(self.items)


def to_history(element, fractions, salt: str) -> UserHistory:
    """Turns a combined ``(user, (total, filtered, buckets))`` into a ``UserHistory``."""
    user, (total, filtered, buckets) = element
    source = buckets.get("source") or EventColumns()
    target = buckets.get("target")
    targets = tuple(target.events()) if target is not None else ()
    truncated = total - filtered - len(source) - len(targets)
    return UserHistory(user, splits.assign_split(user, fractions, salt),
                       source.item_tokens(), source.timestamp_values(), total, filtered, truncated, targets)


class SumDictsFn(beam.CombineFn):
    """Sums dicts of counters (the run's statistics)."""

    def create_accumulator(self):
        return {}

    def add_input(self, accumulator, counts):
        for key, value in counts.items():
            accumulator[key] = accumulator.get(key, 0) + value
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = {}
        for accumulator in accumulators:
            self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator):
        return dict(sorted(accumulator.items()))


def reject_to_json(reject: Reject) -> str:
    """Counts a reject in Beam metrics and returns its rejects-file line."""
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, f"rejects_{reject.reason}").inc()
    return reject.to_json_line()


def reject_stats(reject: Reject) -> Dict[str, int]:
    """The counters a reject adds to the run's statistics."""
    return {f"rejects/{reject.reason}": 1}


REJECTS_PREFIX = "rejects"
REJECTS_SUFFIX = ".jsonl"
STATS_FILE = "_run_stats.json"
SUMMARY_FILE = "summary.json"


def _keyed_line(line: str):
    data = line.encode("utf-8")
    return REJECTS_PREFIX, data, data


def write_rejects(rejects, rejects_dir: str, num_shards: int = 1):
    """Writes rejects as JSON lines to ``rejects_dir/rejects-SSSSS-of-NNNNN.jsonl``, sorted (``output_files``)."""
    lines = (rejects
             | "RejectsToJson" >> beam.Map(reject_to_json)
             | "KeyRejects" >> beam.Map(_keyed_line))
    return output_files.write_sorted_shards(
        lines, "Rejects", {REJECTS_PREFIX: (os.path.join(rejects_dir, REJECTS_PREFIX), num_shards, REJECTS_SUFFIX)},
        tfrecord=False)


def write_stats(stats_pcollections: Sequence, rejects_dir: str):
    """Sums every stats dict of the run and writes them as one JSON file in rejects_dir."""
    return (tuple(stats_pcollections)
            | "AllStats" >> beam.Flatten()
            | "SumStats" >> beam.CombineGlobally(SumDictsFn())
            | "StatsJson" >> beam.Map(json.dumps)
            | "WriteStats" >> beam.io.WriteToText(os.path.join(rejects_dir, STATS_FILE),
                                                  shard_name_template="", num_shards=1))


def write_examples(keyed_examples, examples_dir: str, split_names: Sequence[str], num_shards: int):
    """Writes ``(split, serialized example)`` pairs as GZIP TFRecords under Split-<name>/.

    ``num_shards`` files a split, each example in the shard of a stable hash of its bytes
    (one example a user, whose id it holds), sorted by those bytes: the files depend only
    on the examples (``output_files``).
    """
    paths = {name: (os.path.join(example_format.split_dir(examples_dir, name), example_format.FILE_PREFIX),
                    num_shards, ".gz") for name in split_names}
    triples = keyed_examples | "KeyExamples" >> beam.Map(lambda kv: (kv[0], kv[1], kv[1]))
    return output_files.write_sorted_shards(triples, "Examples", paths, tfrecord=True)


def read_stats(rejects_dir: str) -> Dict[str, int]:
    """Reads the stats file the pipeline wrote and deletes it (the summary replaces it)."""
    from apache_beam.io.filesystems import FileSystems

    path = os.path.join(rejects_dir, STATS_FILE)
    with FileSystems.open(path) as handle:
        stats = json.loads(handle.read().decode("utf-8"))
    FileSystems.delete([path])
    return stats


def write_text(path: str, text: str) -> None:
    """Writes a small text file on any Beam file system."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))


def reject_files(rejects_dir: str) -> List[str]:
    """Lists the rejects files of a rejects folder."""
    pattern = os.path.join(rejects_dir, REJECTS_PREFIX + "*" + REJECTS_SUFFIX)
    return [path for path, _ in source_chunks.match_files(pattern)]


def read_rejects(rejects_dir: str, limit: Optional[int] = None) -> List[Reject]:
    """Reads the rejects of a run (sorted by source, line number, reason); ``limit`` caps it."""
    from apache_beam.io.filesystems import FileSystems

    found: List[Reject] = []
    for path in reject_files(rejects_dir):
        with FileSystems.open(path) as handle:
            for line in handle.read().decode("utf-8").splitlines():
                if line.strip():
                    found.append(Reject.from_json_line(line))
                    if limit is not None and len(found) >= limit:
                        break
        if limit is not None and len(found) >= limit:
            break
    found.sort(key=lambda r: (r.source, r.line_number if r.line_number is not None else -1, r.reason, r.line))
    return found


OUTPUT_PATTERNS = (
    os.path.join("Split-*", example_format.FILE_PREFIX + "-*"),
    REJECTS_PREFIX + "-*" + REJECTS_SUFFIX,
    SUMMARY_FILE,
    STATS_FILE,
    vocabulary_lib.FILENAME,
    vocabulary_lib.TITLES_FILENAME,
)


def previous_outputs(*folders: str) -> List[str]:
    """The files a previous run wrote into these output folders (only ours), summaries first."""
    found = {path for folder in folders for pattern in OUTPUT_PATTERNS
             for path, _ in source_chunks.match_files(os.path.join(folder, pattern))}
    return sorted(found, key=lambda path: (os.path.basename(path) != SUMMARY_FILE, path))


def commit_outputs(*folders: str) -> None:
    """Moves a finished run's staged files into place, replacing the previous run's (``output_files.commit``)."""
    output_files.commit(folders, previous_outputs(*folders))


def history_stats(history: UserHistory) -> Dict[str, int]:
    """The counters one user adds: read events by fate and users by split."""
    return {"kept": history.kept, "truncated": history.truncated,
            "filtered": history.filtered, "users": 1, f"users/{history.split}": 1}


def dropped_user_stats(history: UserHistory) -> Dict[str, int]:
    """The counters of a user rejected as a whole: all their in-domain interactions are dropped."""
    return {"dropped": history.total - history.filtered, "filtered": history.filtered}


def drop_user(history: UserHistory, reject: Reject):
    """The tagged outputs of a user rejected as a whole: the reject and the user's dropped counts."""
    yield beam.pvalue.TaggedOutput(REJECTS, reject)
    yield beam.pvalue.TaggedOutput(STATS, dropped_user_stats(history))


def encode_history(history: UserHistory, item_vocabulary, **features) -> Tuple[str, bytes, Dict[str, int]]:
    """A user's example: ``(split, serialized tf.train.Example, counters)``.

    ``features`` are the task's extra features (``label``, ``target_item_ids``); the
    counters are ``history_stats`` plus the kept items that map to the unknown id.
    """
    from peterrec.components import example_codec, ids

    item_ids = item_vocabulary.lookup_many(history.items)
    example = example_codec.encode_example(history.user, item_ids, history.timestamps, **features)
    stats = history_stats(history)
    stats["unknown_items"] = sum(1 for i in item_ids if i == ids.UNK_ID)
    return history.split, example, stats


def write_rejects_and_stats(rejects_parts, stats_parts, rejects_dir: str, num_shards: int = 1) -> None:
    """Writes every reject of a run and its counts (stats plus one per reject) to ``rejects_dir``.

    The closing step every ingestion pipeline shares: flattens the reject collections,
    writes them, and adds their per-reason counts to the run's stats file.
    """
    rejects = tuple(rejects_parts) | "AllRejects" >> beam.Flatten()
    write_rejects(rejects, rejects_dir, num_shards)
    write_stats(list(stats_parts) + [rejects | "RejectStats" >> beam.Map(reject_stats)], rejects_dir)
