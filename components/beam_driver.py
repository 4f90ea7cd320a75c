"""The Beam driver every ingestion pipeline shares: set-up, reading, vocabularies, writing, running.

``ingest.run_ingestion`` and the two task pipelines (``attribute_task``,
``cold_start_task``) differ only in what they make of users' histories; the rest is a
``BeamRun``:

1. ``BeamRun(beam_pipeline_args, files, requested_chunk_bytes)`` sizes the read chunks and
   names the runner (``beam_options``); ``start`` logs what runs, removes a previous run's
   outputs and builds the pipeline;
2. ``read_interactions`` and ``read_table`` add the readers, ``combine_histories`` turns
   interactions into one ``UserHistory`` per user; ``collect`` and ``add_stats`` keep every
   step's rejects and counters;
3. ``vocabulary`` builds a vocabulary over the tokens of a collection (or takes a given
   one) and writes it; ``item_titles`` writes the titles of an item vocabulary's items
   next to it when the source has an item table (MovieLens);
4. ``finish`` writes the examples, the rejects and the counters, runs the pipeline to the
   end, and returns the summed counters and the wall time.

Beam is imported inside the functions: importing a config must stay cheap.
"""

import json
import logging
import os
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

from peterrec.components import beam_options, readers
from peterrec.components.ingest_config import IngestConfig, item_table
from peterrec.components.records import IngestError, ItemRecord
from peterrec.components.source_chunks import SourceFile, companion_path, match_files
from peterrec.components.vocabulary import FILENAME, TITLES_FILENAME, Vocabulary, write_item_titles

log = logging.getLogger(__name__)


def progress(message: str) -> None:
    """Progress output of long runs (the CLI shows INFO logs)."""
    log.info(message)


def check_settings(config: IngestConfig, what: str) -> None:
    """Validates a run's config, raising IngestError that names the run (``what``)."""
    try:
        config.validate()
    except ValueError as error:
        raise IngestError(f"invalid {what} settings: {error}") from error


def choose_chunk_bytes(files: Sequence[SourceFile], requested: int,
                       beam_pipeline_args: Optional[Sequence[str]]) -> int:
    """Chunk size: as asked, else about four chunks per local worker, within [1 MiB, 64 MiB]."""
    if requested:
        return requested
    total = sum(f.size for f in files)
    workers = beam_options.available_cpus() if beam_options.is_local_direct(beam_pipeline_args) else 16
    return int(min(64 << 20, max(1 << 20, total // max(1, 4 * workers))))


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


def source_buckets(config: IngestConfig) -> Tuple[Dict[str, str], Optional[str]]:
    """``(buckets, default bucket)`` of a run with one domain: the kept domain, or every event."""
    domain = config.effective_domain
    if domain is None:
        return {}, "source"
    return {domain: "source"}, None


def combine_histories(interactions, config: IngestConfig, limits: Dict[str, Optional[int]],
                      buckets: Dict[str, str], default_bucket: Optional[str]):
    """``(user, event)`` pairs -> one ``UserHistory`` per user, with its split (see ``beam_steps``)."""
    import apache_beam as beam

    from peterrec.components import beam_steps

    combine = beam_steps.SequenceCombineFn(limits, buckets, default_bucket)
    return (interactions
            | "LatestPerUser" >> beam.CombinePerKey(combine)
            | "ToHistory" >> beam.Map(beam_steps.to_history, config.split_fractions, config.split_salt))


def title_table(config: IngestConfig) -> Tuple[Optional[readers.LineFormat], Optional[str]]:
    """(item-table format, path) holding the source's item titles, or (None, None) when it has none.

    Only MovieLens sources have item tables (``readers.ITEM_FORMATS``); a MovieLens folder
    without its ``movies.dat`` / ``u.item`` simply has no titles.
    """
    make = readers.ITEM_FORMATS.get(config.source_format)
    if make is None:
        return None, None
    fmt = make(None)
    path = companion_path(config.source_path, fmt.default_file)
    return (fmt, path) if match_files(path) else (None, None)


def _titles_of_table(path: str, fmt: readers.LineFormat):
    """``(item, title)`` of an item table's lines that have a title.

    Bad lines only lack a title here: a domain rule's read of the same table rejects and
    counts them, and without a rule the table is not part of the run's accounting.
    """
    for record in readers.read_records(fmt, path, "item table"):
        if isinstance(record, ItemRecord) and record.title:
            yield record.item, record.title


def _rare_token_stats(token_count, min_count: int, kind: str) -> Dict[str, int]:
    """Counts a token left out of the vocabulary for being seen fewer than ``min_count`` times."""
    return {f"rare_{kind}s": int(token_count[1] < min_count)}


def _build_vocabulary(token_counts, kind: str, min_count: int) -> Vocabulary:
    return Vocabulary.from_counts(kind, dict(token_counts), min_count=min_count)


def _vocabulary_json(vocabulary: Vocabulary) -> str:
    return json.dumps(vocabulary.to_json_dict())


class BeamRun:
    """One run of an ingestion-style Beam pipeline: its pipeline, collected outputs and runner."""

    def __init__(self, beam_pipeline_args: Optional[Sequence[str]], files: Sequence[SourceFile],
                 requested_chunk_bytes: int = 0):
        self.beam_pipeline_args = beam_pipeline_args
        self.chunk_bytes = choose_chunk_bytes(files, requested_chunk_bytes, beam_pipeline_args)
        self.runner = beam_options.describe(beam_pipeline_args)
        self.pipeline = None
        self._rejects = []
        self._stats = []

    def start(self, message: str, *output_dirs: str):
        """Logs ``message``, removes a previous run's files from the output folders, builds the pipeline."""
        import apache_beam as beam

        from peterrec.components import beam_steps

        progress(message)
        beam_steps.clear_outputs(*output_dirs)
        self.pipeline = beam.Pipeline(options=beam_options.make_pipeline_options(self.beam_pipeline_args))
        return self.pipeline

    def collect(self, outputs):
        """Keeps the rejects and counters of a step's tagged outputs; returns the outputs."""
        from peterrec.components import beam_steps

        self._rejects.append(outputs[beam_steps.REJECTS])
        self._stats.append(outputs[beam_steps.STATS])
        return outputs

    def add_stats(self, stats) -> None:
        """Keeps a collection of counter dicts, summed into the run's counters."""
        self._stats.append(stats)

    def read_table(self, label: str, fmt: readers.LineFormat, files: Sequence[SourceFile], **options):
        """Adds a ``ReadTable`` step (options: see it), collects its rejects and counters, returns its records."""
        from peterrec.components import beam_steps

        outputs = self.pipeline | label >> beam_steps.ReadTable(fmt, files, self.chunk_bytes, **options)
        return self.collect(outputs)[beam_steps.RECORDS]

    def read_interactions(self, config: IngestConfig, files: Sequence[SourceFile], need_domain: bool):
        """Reads the interactions as ``(user, event)`` pairs, with their domains from an item table if any.

        ``need_domain``: interactions without a domain are rejected (unless a domain
        rule's item table gives every item one).
        """
        item_fmt, item_files = item_table(config)
        item_domains = None
        if item_fmt is not None:
            item_domains = self.read_table("ReadItemTable", item_fmt, item_files, stats_prefix="items/")
        fmt = readers.interaction_format(config.source_format)
        return self.read_table("ReadInteractions", fmt, files, need_domain=need_domain and item_fmt is None,
                               item_domains=item_domains)

    def vocabulary(self, kind: str, directory: str, tokens: Callable[[], object],
                   given: Optional[Vocabulary] = None, min_count: int = 1):
        """The run's ``kind`` vocabulary as a one-element collection, written to ``directory``.

        Built over the tokens of ``tokens()`` (a collection, one element per occurrence)
        unless ``given``; tokens seen fewer than ``min_count`` times are left out and
        counted (``rare_<kind>s``).
        """
        import apache_beam as beam

        from peterrec.components import beam_steps

        name = kind.capitalize()
        if given is None:
            counts = tokens() | f"Count{name}s" >> beam.combiners.Count.PerElement()
            if min_count > 1:
                self.add_stats(counts | f"Rare{name}s" >> beam.Map(_rare_token_stats, min_count, kind))
            built = (counts
                     | f"All{name}Counts" >> beam.combiners.ToList()
                     | f"Build{name}Vocabulary" >> beam.Map(_build_vocabulary, kind, min_count))
        else:
            built = self.pipeline | f"Given{name}Vocabulary" >> beam.Create([given])
        beam_steps.write_single_file(built | f"{name}VocabularyJson" >> beam.Map(_vocabulary_json),
                                     os.path.join(directory, FILENAME), f"Write{name}Vocabulary")
        return built

    def item_titles(self, config: IngestConfig, directory: str, vocabulary) -> None:
        """Writes ``TITLES_FILENAME`` for the items of ``vocabulary`` (a one-element collection of one Vocabulary).

        Titles come from the source's item table (``title_table``); nothing is written for a
        source without titles, and a previous run's titles file in ``directory`` is removed.
        """
        import apache_beam as beam
        from apache_beam.io.filesystems import FileSystems

        stale = [path for path, _ in match_files(os.path.join(directory, TITLES_FILENAME))]
        if stale:
            FileSystems.delete(stale)
        fmt, path = title_table(config)
        if fmt is None:
            return
        titles = (self.pipeline
                  | "ItemTitleTable" >> beam.Create([path])
                  | "ReadItemTitles" >> beam.FlatMap(_titles_of_table, fmt))
        _ = vocabulary | "WriteItemTitles" >> beam.Map(write_item_titles, beam.pvalue.AsDict(titles), directory)

    def finish(self, examples, examples_dir: str, config: IngestConfig, rejects_dir: str,
               label: str) -> Tuple[Dict[str, int], float]:
        """Writes ``(split, serialized example)`` pairs, rejects and counters; runs; returns (counters, seconds)."""
        from peterrec.components import beam_steps

        beam_steps.write_examples(examples, examples_dir, config.split_names, config.num_shards)
        beam_steps.write_rejects_and_stats(self._rejects, self._stats, rejects_dir)
        elapsed = run_pipeline(self.pipeline, label)
        return beam_steps.read_stats(rejects_dir), elapsed
