"""The Beam driver every ingestion pipeline shares: set-up, reading, vocabularies, writing, running.

``ingest.run_ingestion`` and the two task pipelines (``attribute_task``,
``cold_start_task``) differ only in what they make of users' histories; the rest is a
``BeamRun``:

1. ``BeamRun(beam_pipeline_args, files, requested_chunk_bytes)`` sizes the read chunks and
   names the runner (``beam_options``); ``start`` logs what runs, removes what a killed
   run left in the staging folders (``output_files``) and builds the pipeline;
2. ``read_interactions`` and ``read_table`` add the readers, ``combine_histories`` turns
   interactions into one ``UserHistory`` per user; ``collect`` and ``add_stats`` keep every
   step's rejects and counters;
3. ``vocabulary_ids`` ranks a vocabulary over the tokens of a collection in bounded pieces
   (``vocabulary_ranking``; or takes a given one) and returns its ``(token, id)`` pairs,
   ``vocabulary`` the same joined into one element for small vocabularies (labels,
   targets); ``item_titles`` asks for the titles of an item vocabulary's items next to it
   when the source has an item table (MovieLens);
4. ``finish`` writes the examples (reproducible shards, ``output_files``), the rejects and
   the counters to the staging folders, runs the pipeline to the end, writes the
   vocabularies, moves everything into place, and returns the summed counters and the
   wall time; the caller then writes the summary, the last file of a complete run.

Beam is imported inside the functions: importing a config must stay cheap.
"""

import json
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from peterrec.components import beam_options, output_files, readers, vocabulary_ranking
from peterrec.components.ingest_config import IngestConfig, item_table
from peterrec.components.records import IngestError, ItemRecord
from peterrec.components.source_chunks import SourceFile, companion_path, match_files
from peterrec.components.vocabulary import FILENAME, Vocabulary, write_item_titles

log = logging.getLogger(__name__)
_PIECES_SUFFIX = "-vocabulary-pieces"   # a vocabulary's piece lines in its staging folder (vocabulary_ranking)


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


def _vocabulary_json(vocabulary: Vocabulary) -> str:
    return json.dumps(vocabulary.to_json_dict())


def _read_lines(pattern: str) -> List[str]:
    """The lines of the files matching ``pattern``, which are deleted afterwards."""
    from apache_beam.io.filesystems import FileSystems

    paths = [path for path, _ in match_files(pattern)]
    lines = []
    for path in paths:
        with FileSystems.open(path) as handle:
            lines.extend(handle.read().decode("utf-8").splitlines())
    if paths:
        FileSystems.delete(paths)
    return lines


class BeamRun:
    """One run of an ingestion-style Beam pipeline: its pipeline, collected outputs and runner.

    Every file goes to the output folders' staging folders first (``output_files``) and
    is moved into place by ``finish`` once the pipeline has run to the end.
    """

    def __init__(self, beam_pipeline_args: Optional[Sequence[str]], files: Sequence[SourceFile],
                 requested_chunk_bytes: int = 0):
        self.beam_pipeline_args = beam_pipeline_args
        self.chunk_bytes = choose_chunk_bytes(files, requested_chunk_bytes, beam_pipeline_args)
        self.input_bytes = sum(f.size for f in files)
        self.runner = beam_options.describe(beam_pipeline_args)
        self.pipeline = None
        self._folders: List[str] = []
        self._rejects = []
        self._stats = []
        self._vocabularies: List[Tuple[str, str, Optional[Vocabulary]]] = []
        self._titles: Dict[str, IngestConfig] = {}

    def start(self, message: str, *output_dirs: str):
        """Logs ``message``, removes what a killed run left in the output folders' staging folders, builds the pipeline.

        A previous run's outputs stay in place until this run has finished (``finish``).
        """
        import apache_beam as beam

        progress(message)
        self._folders = list(dict.fromkeys(output_dirs))
        output_files.clear_staging(*self._folders)
        self.pipeline = beam.Pipeline(options=beam_options.make_pipeline_options(self.beam_pipeline_args))
        return self.pipeline

    @staticmethod
    def staged(folder: str) -> str:
        """Where this run writes the files of an output folder until it has finished."""
        return output_files.staging_dir(folder)

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

    def _ranked(self, kind: str, directory: str, tokens: Callable[[], object], given: Optional[Vocabulary],
                min_count: int):
        """(piece lines or None, ``(token, id)`` pairs) of a vocabulary; registers it for ``finish``."""
        import apache_beam as beam

        name = kind.capitalize()
        self._vocabularies.append((kind, directory, given))
        if given is not None:
            pairs = [(token, given.lookup(token)) for token in given.tokens]
            return None, self.pipeline | f"Given{name}Ids" >> beam.Create(pairs, reshuffle=False)
        counts = tokens() | f"Count{name}s" >> beam.combiners.Count.PerElement()
        if min_count > 1:
            self.add_stats(counts | f"Rare{name}s" >> beam.Map(_rare_token_stats, min_count, kind))
        lines, token_ids = vocabulary_ranking.RankTokens(kind, min_count, name).apply(counts)
        _ = lines | f"Write{name}Pieces" >> beam.io.WriteToText(
            os.path.join(self.staged(directory), f"{kind}{_PIECES_SUFFIX}"))
        return lines, token_ids

    def vocabulary_ids(self, kind: str, directory: str, tokens: Callable[[], object],
                       given: Optional[Vocabulary] = None, min_count: int = 1):
        """The ``(token, id)`` pairs of the run's ``kind`` vocabulary; ``finish`` writes it to ``directory``.

        Built over the tokens of ``tokens()`` (a collection, one element per occurrence)
        in bounded pieces (``vocabulary_ranking``) unless ``given``; tokens seen fewer than
        ``min_count`` times are left out and counted (``rare_<kind>s``). Look ids up with
        ``vocabulary_ranking.IdLookup`` over ``beam.pvalue.AsDict`` of the pairs.
        """
        return self._ranked(kind, directory, tokens, given, min_count)[1]

    def vocabulary(self, kind: str, directory: str, tokens: Callable[[], object],
                   given: Optional[Vocabulary] = None, min_count: int = 1):
        """The run's ``kind`` vocabulary as a one-element collection; ``finish`` writes it to ``directory``.

        As ``vocabulary_ids``, joined into one ``Vocabulary`` for steps that take it whole:
        small vocabularies (labels, a task's targets); item vocabularies use ``vocabulary_ids``.
        """
        import apache_beam as beam

        name = kind.capitalize()
        lines, _ = self._ranked(kind, directory, tokens, given, min_count)
        if lines is None:
            return self.pipeline | f"Given{name}Vocabulary" >> beam.Create([given])
        return (lines
                | f"All{name}Pieces" >> beam.combiners.ToList()
                | f"Join{name}Pieces" >> beam.Map(lambda piece_lines: vocabulary_ranking.assemble(kind, piece_lines)))

    def item_titles(self, config: IngestConfig, directory: str) -> None:
        """Has ``finish`` write ``TITLES_FILENAME`` next to the item vocabulary written to ``directory``.

        Titles come from the source's item table (``title_table``); nothing is written for a
        source without titles (and a previous run's titles file goes with its other outputs).
        """
        self._titles[directory] = config

    def _write_vocabularies(self) -> None:
        """Joins each vocabulary's pieces into ``vocabulary.json`` (and titles) in its staging folder."""
        from peterrec.components import beam_steps

        for kind, directory, given in self._vocabularies:
            staged = self.staged(directory)
            pieces = _read_lines(os.path.join(staged, f"{kind}{_PIECES_SUFFIX}*"))
            vocabulary = given if given is not None else vocabulary_ranking.assemble(kind, pieces)
            beam_steps.write_text(os.path.join(staged, FILENAME), _vocabulary_json(vocabulary) + "\n")
            config = self._titles.get(directory)
            fmt, path = title_table(config) if config is not None else (None, None)
            if fmt is not None:
                write_item_titles(vocabulary, dict(_titles_of_table(path, fmt)), staged)

    def finish(self, examples, examples_dir: str, config: IngestConfig, rejects_dir: str,
               label: str) -> Tuple[Dict[str, int], float]:
        """Writes ``(split, serialized example)`` pairs, rejects and counters; runs; returns (counters, seconds).

        After the pipeline has finished, the vocabularies are joined and every staged file
        is moved into place; the caller writes the summary last (``publish_summary``).
        """
        from peterrec.components import beam_steps

        num_shards = config.num_shards or output_files.default_num_shards(self.input_bytes)
        beam_steps.write_examples(examples, self.staged(examples_dir), config.split_names, num_shards)
        beam_steps.write_rejects_and_stats(self._rejects, self._stats, self.staged(rejects_dir), num_shards)
        elapsed = run_pipeline(self.pipeline, label)
        stats = beam_steps.read_stats(self.staged(rejects_dir))
        self._write_vocabularies()
        beam_steps.commit_outputs(*self._folders)
        return stats, elapsed
