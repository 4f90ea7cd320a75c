"""The shared Beam driver: chunk sizing, domain buckets, settings errors and the summary checks."""

import json
import os

import pytest

from peterrec.components import beam_driver, beam_options
from peterrec.components.ingest_config import IngestConfig
from peterrec.components.ingest_summary import IngestSummary, publish_summary, summary_fields
from peterrec.components.records import IngestError
from peterrec.components.source_chunks import SourceFile
from peterrec.components.vocabulary import Vocabulary


def _files(*sizes):
    return [SourceFile(index, f"f{index}.csv", size) for index, size in enumerate(sizes)]


def test_chunk_bytes_as_asked_else_four_per_worker_within_bounds(monkeypatch):
    monkeypatch.setattr(beam_options, "available_cpus", lambda: 2)
    assert beam_driver.choose_chunk_bytes(_files(10 << 30), 12345, None) == 12345
    assert beam_driver.choose_chunk_bytes(_files(16 << 20), 0, None) == 2 << 20          # 16 MiB / (4 * 2)
    assert beam_driver.choose_chunk_bytes(_files(1000), 0, None) == 1 << 20              # at least 1 MiB
    assert beam_driver.choose_chunk_bytes(_files(10 << 30), 0, None) == 64 << 20         # at most 64 MiB
    remote = ["--runner=DataflowRunner"]                                                  # 16 workers assumed
    assert beam_driver.choose_chunk_bytes(_files(128 << 20), 0, remote) == 2 << 20


def test_source_buckets_keep_one_domain_or_everything():
    assert beam_driver.source_buckets(IngestConfig("csv", "x.csv")) == ({}, "source")
    assert beam_driver.source_buckets(IngestConfig("csv", "x.csv", domain="books")) == ({"books": "source"}, None)
    # PeterRec CSVs keep their source field unless told otherwise.
    assert beam_driver.source_buckets(IngestConfig("peterrec-csv", "x.csv")) == ({"source": "source"}, None)


def test_bad_settings_name_the_run():
    with pytest.raises(IngestError, match="invalid cold-start settings: max_len"):
        beam_driver.check_settings(IngestConfig("csv", "x.csv", max_len=0), "cold-start")
    beam_driver.check_settings(IngestConfig("csv", "x.csv"), "ingestion")


def _summary(config, **stats):
    vocabulary = Vocabulary.from_counts("item", {"a": 2, "b": 1})
    return IngestSummary(**summary_fields(config, stats, vocabulary, "DirectRunner", 1.23456))


def test_summary_fields_come_from_the_counters():
    config = IngestConfig("csv", "x.csv", split_fractions=(("train", 1.0),))
    summary = _summary(config, read=10, kept=7, truncated=2, rejected=1, users=3, **{"users/train": 3,
                                                                                       "rejects/blank_line": 1})
    assert (summary.read, summary.kept, summary.truncated, summary.rejected) == (10, 7, 2, 1)
    assert summary.users_by_split == {"train": 3} and summary.rejects_by_reason == {"blank_line": 1}
    assert summary.vocabulary_size == 6 and summary.elapsed_seconds == 1.235 and summary.accounted == 10


def test_publish_summary_writes_then_checks(tmp_path):
    config = IngestConfig("csv", "x.csv", max_reject_fraction=0.1)
    publish_summary(_summary(config, read=10, kept=10, users=1), config, str(tmp_path))
    with open(os.path.join(tmp_path, "summary.json"), encoding="utf-8") as handle:
        assert json.load(handle)["read"] == 10
    with pytest.raises(IngestError, match="accounting error"):
        publish_summary(_summary(config, read=10, kept=9, users=1), config, str(tmp_path))
    with pytest.raises(IngestError, match="no interactions were read"):
        publish_summary(_summary(config), config, str(tmp_path))
    with pytest.raises(IngestError, match="more than max_reject_fraction=0.1"):
        publish_summary(_summary(config, read=10, kept=8, rejected=2, users=1, **{"rejects/blank_line": 2}),
                        config, str(tmp_path))
