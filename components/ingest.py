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
- ``vocabulary_dir/vocabulary.json``: the ``Vocabulary`` artifact, and next to it
  ``item_titles.tsv`` (token<TAB>title per vocabulary item, in id order) when the source
  has an item table with titles (MovieLens ``movies.dat`` / ``u.item``): TensorBoard's
  projector labels the pretrained item embeddings with them;
- ``rejects_dir/rejects-*.jsonl``: one JSON line per reject (reason, source file, line
  number, the offending line, detail), and ``rejects_dir/summary.json``.

The files are reproducible: the same input gives byte-identical files on every run and
runner (``num_shards`` files a split, set by the input's size unless given; examples
placed and ordered by a stable hash and their bytes), apart from ``summary.json``'s
``elapsed_seconds``. They are written to staging folders and moved into place when the
run has finished; ``summary.json`` is written last and marks a complete run, so a killed
run never leaves outputs that look finished, and a rerun into the same folders cleans up
and writes them again (``output_files``).

Every interaction read is accounted for: ``kept + truncated + filtered + dropped +
rejected == read`` (``filtered``: other domains when ``domain`` is set; ``dropped``:
interactions of users rejected as a whole, used by the task pipelines). Without a domain
filter both are 0 and ``kept + truncated + rejected == read``. A run whose rejected
fraction exceeds ``max_reject_fraction`` raises ``IngestError`` after writing the
rejects and the summary, so the reasons can be inspected.
"""

from typing import Optional, Sequence

from peterrec.components.beam_driver import BeamRun, check_settings, combine_histories, source_buckets
from peterrec.components.ingest_config import IngestConfig, source_files
from peterrec.components.ingest_summary import IngestSummary, publish_summary, read_summary, summary_fields
from peterrec.components.records import EMPTY_SEQUENCE, IngestError, Reject
from peterrec.components.vocabulary import Vocabulary, check_vocabulary, load_vocabulary

# The config, summary and vocabulary loader live in their own modules; callers import them from here.
__all__ = ["IngestConfig", "IngestSummary", "IngestError", "run_ingestion", "read_summary", "load_vocabulary"]


def _route_history(history, empty_source: str):
    """Non-empty histories to the main output; users without items of the kept domain to rejects."""
    from peterrec.components import beam_steps

    if history.items:
        yield history
    else:
        yield from beam_steps.drop_user(history, Reject(
            EMPTY_SEQUENCE, empty_source, None, history.user,
            f"no interactions left in the sequence ({history.filtered} of other domains)"))


def _item_of_domain(keyed_event, domain: Optional[str]):
    """The item of a ``(user, event)`` pair when the event is of the kept domain (all without one)."""
    event = keyed_event[1]
    if domain is None or event[5] == domain:
        yield event[4]


def _encode_history(history, item_ids):
    """(split, serialized example) of a user's sequence, plus its counters (``item_ids``: token -> id)."""
    import apache_beam as beam

    from peterrec.components import beam_steps
    from peterrec.components.vocabulary_ranking import IdLookup

    split, example, stats = beam_steps.encode_history(history, IdLookup(item_ids))
    yield split, example
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

    check_settings(config, "ingestion")
    if vocabulary is not None:
        vocabulary = check_vocabulary(vocabulary, "item", what="ingestion")
    files = source_files(config)
    domain = config.effective_domain
    run = BeamRun(beam_pipeline_args, files, config.chunk_bytes)
    run.start(f"ingesting {config.source_format} from {config.source_path}: {len(files)} file(s), "
              f"{sum(f.size for f in files) / 1e6:.1f} MB, on {run.runner}", examples_dir, vocabulary_dir, rejects_dir)
    source_label = ",".join(f.path for f in files)

    interactions = run.read_interactions(config, files, need_domain=domain is not None)
    routed = (combine_histories(interactions, config, {"source": config.max_len}, *source_buckets(config))
              | "DropEmpty" >> beam.FlatMap(_route_history, source_label).with_outputs(
                  beam_steps.REJECTS, beam_steps.STATS, main="histories"))
    run.collect(routed)
    # Every interaction read of the kept domain counts, truncated ones too, so a cap never
    # hides an item from the vocabulary.
    item_ids = run.vocabulary_ids("item", vocabulary_dir, given=vocabulary, min_count=config.min_item_count,
                                  tokens=lambda: interactions | "DomainItems" >> beam.FlatMap(_item_of_domain, domain))
    run.item_titles(config, vocabulary_dir)
    encoded = routed["histories"] | "Encode" >> beam.FlatMap(
        _encode_history, beam.pvalue.AsDict(item_ids)).with_outputs(beam_steps.STATS, main="examples")
    run.add_stats(encoded[beam_steps.STATS])
    stats, elapsed = run.finish(encoded["examples"], examples_dir, config, rejects_dir, "ingestion")

    final_vocabulary = vocabulary or load_vocabulary(vocabulary_dir)
    summary = IngestSummary(**summary_fields(config, stats, final_vocabulary, run.runner, elapsed))
    publish_summary(summary, config, rejects_dir)
    if summary.users == 0:
        raise IngestError(f"no user has a non-empty sequence in {config.source_path} (domain={domain!r})")
    return summary
