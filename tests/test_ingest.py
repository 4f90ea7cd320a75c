"""End-to-end ingestion on generated data: accounting, rejects, order with ties, splits, vocabulary."""

import collections
import json
import os
import random

import pytest

from peterrec.components import beam_steps, example_format, ids, splits
from peterrec.components.ingest import IngestConfig, IngestError, IngestSummary, read_summary, run_ingestion
from peterrec.components.records import EMPTY_SEQUENCE, Reject
from peterrec.components.vocabulary import Vocabulary

MAX_LEN = 6
GARBAGE = ["this is not a rating", "12::abc::3::978300000", "12::7::3::later", "12::7::3", "",
           "9::9::x::978300000", "-4::7::3::978300000"]


def _movielens_lines(seed=7, users=30):
    """Ratings with many timestamp ties, shuffled like a log; returns lines (no garbage yet)."""
    rng = random.Random(seed)
    lines = []
    for user in range(1, users + 1):
        for _ in range(rng.randint(1, 14)):
            lines.append(f"{user}::{rng.randint(1, 25)}::{rng.randint(1, 5)}::{978300000 + rng.randint(0, 6)}")
    rng.shuffle(lines)
    return lines


def _with_garbage(lines, seed=3):
    rng = random.Random(seed)
    mixed = list(lines)
    positions = sorted(rng.sample(range(len(lines)), len(GARBAGE)))
    for offset, (position, bad) in enumerate(zip(positions, GARBAGE)):
        mixed.insert(position + offset, bad)
    return mixed


def _expected_sequences(lines, max_len):
    """A plain-Python reference: per user, (timestamp, line) order, the last max_len items."""
    events = collections.defaultdict(list)
    for number, line in enumerate(lines, start=1):
        fields = line.split("::")
        if len(fields) == 4 and all(f.isdigit() for f in fields):
            events[fields[0]].append((int(fields[3]), number, fields[1]))
    return {user: [(item, ts) for ts, _, item in sorted(evs)[-max_len:]] for user, evs in events.items()}


def _decoded(examples_dir, vocabulary, split_names=example_format.SPLITS):
    by_split = {}
    for split in split_names:
        rows = {}
        for example in example_format.read_examples(examples_dir, split):
            row = example_format.example_to_dict(example)
            rows[row["user_id"]] = list(zip((vocabulary.token(i) for i in row["item_ids"]), row["timestamps"]))
        by_split[split] = rows
    return by_split


def _outputs(root):
    return str(root / "examples"), str(root / "vocabulary"), str(root / "rejects")


@pytest.fixture(scope="module")
def movielens_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    folder = root / "ml-1m"
    folder.mkdir()
    clean = _movielens_lines()
    lines = _with_garbage(clean)
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    config = IngestConfig("movielens-1m", str(folder), max_len=MAX_LEN, max_reject_fraction=0.5,
                          chunk_bytes=300)  # many chunks: line numbers must survive them
    summary = run_ingestion(config, *_outputs(root))
    return root, lines, clean, summary


def test_every_interaction_is_accounted_for(movielens_run):
    _, lines, clean, summary = movielens_run
    assert summary.read == len(lines)
    assert summary.rejected == len(GARBAGE)
    assert summary.kept + summary.truncated + summary.rejected == summary.read
    assert summary.filtered == summary.dropped == 0
    assert summary.kept == sum(len(s) for s in _expected_sequences(clean, MAX_LEN).values())


def test_rejects_list_exactly_the_garbage_lines(movielens_run):
    root, lines, _, summary = movielens_run
    rejects = beam_steps.read_rejects(str(root / "rejects"))
    garbage_lines = {number: line for number, line in enumerate(lines, start=1) if line in GARBAGE}
    assert {r.line_number: r.line for r in rejects} == garbage_lines
    assert all(r.source == str(root / "ml-1m" / "ratings.dat") for r in rejects)
    assert sum(summary.rejects_by_reason.values()) == len(GARBAGE)
    assert summary.rejects_by_reason == dict(collections.Counter(r.reason for r in rejects))
    assert {"malformed_line", "non_numeric_id", "non_numeric_timestamp", "non_numeric_rating",
            "blank_line"} <= set(summary.rejects_by_reason)


def test_sequences_are_time_ordered_with_stable_ties_and_truncated(movielens_run):
    root, lines, _, _ = movielens_run
    vocabulary = Vocabulary.load(str(root / "vocabulary"))
    decoded = _decoded(str(root / "examples"), vocabulary)
    got = {user: seq for rows in decoded.values() for user, seq in rows.items()}
    expected = _expected_sequences(lines, MAX_LEN)
    assert got == expected
    assert any(len(seq) == MAX_LEN for seq in got.values())
    has_ties = any(len({ts for _, ts in seq}) < len(seq) for seq in got.values())
    assert has_ties  # the data really exercises tie-breaking


def test_users_split_by_hash_and_never_twice(movielens_run):
    root, _, clean, summary = movielens_run
    vocabulary = Vocabulary.load(str(root / "vocabulary"))
    decoded = _decoded(str(root / "examples"), vocabulary)
    seen = [user for rows in decoded.values() for user in rows]
    assert len(seen) == len(set(seen)) == summary.users == len(_expected_sequences(clean, MAX_LEN))
    for split, rows in decoded.items():
        assert all(splits.assign_split(user) == split for user in rows)
        assert summary.users_by_split[split] == len(rows)


def test_a_source_without_an_item_table_writes_no_item_titles(movielens_run):
    root = movielens_run[0]
    assert sorted(os.listdir(root / "vocabulary")) == ["vocabulary.json"]  # the folder has no movies.dat


def test_vocabulary_counts_every_interaction_even_truncated_ones(movielens_run):
    root, lines, _, summary = movielens_run
    vocabulary = Vocabulary.load(str(root / "vocabulary"))
    everything = _expected_sequences(lines, len(lines))
    counts = collections.Counter(item for seq in everything.values() for item, _ in seq)
    kept = collections.Counter(item for seq in _expected_sequences(lines, MAX_LEN).values() for item, _ in seq)
    assert counts != kept  # the cap really truncated something the vocabulary still counts
    assert vocabulary == Vocabulary.from_counts("item", counts)
    assert vocabulary.kind == "item" and vocabulary.token(ids.PAD_ID) == ids.PAD_TOKEN
    assert list(vocabulary.counts) == sorted(vocabulary.counts, reverse=True)
    assert summary.vocabulary_fingerprint == vocabulary.fingerprint
    assert summary.vocabulary_size == len(vocabulary)


def test_summary_file_and_table(movielens_run):
    root, _, _, summary = movielens_run
    stored = read_summary(str(root / "rejects"))
    assert stored == summary
    assert IngestSummary.from_json(summary.to_json()) == summary
    table = summary.format_table()
    assert f"{summary.read:,}" in table and "non_numeric_id" in table and "train" in table
    assert not os.path.exists(root / "rejects" / beam_steps.STATS_FILE)


def test_reject_fraction_above_the_maximum_fails_clearly(movielens_run, tmp_path):
    root, lines, _, _ = movielens_run
    config = IngestConfig("movielens-1m", str(root / "ml-1m"), max_len=MAX_LEN, max_reject_fraction=0.01)
    with pytest.raises(IngestError, match=r"were rejected .* max_reject_fraction=0.01") as caught:
        run_ingestion(config, *_outputs(tmp_path))
    assert "this is not a rating" in str(caught.value)
    assert len(beam_steps.read_rejects(str(tmp_path / "rejects"))) == len(GARBAGE)
    assert read_summary(str(tmp_path / "rejects")).rejected == len(GARBAGE)


def test_missing_source_and_bad_settings_fail_before_running(tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        run_ingestion(IngestConfig("csv", str(tmp_path / "missing.csv")), *_outputs(tmp_path))
    with pytest.raises(IngestError, match="max_len"):
        run_ingestion(IngestConfig("csv", str(tmp_path), max_len=0), *_outputs(tmp_path))


@pytest.mark.parametrize("settings, message", [
    (dict(source_format="parquet"), "source_format"),
    (dict(max_reject_fraction=1.5), "max_reject_fraction"),
    (dict(split_fractions=(("train", 0.5), ("train", 0.5))), "repeat"),
    (dict(split_fractions=(("train/x", 1.0),)), "letters"),
    (dict(split_fractions=(("a", 0.0),)), "positive"),
    (dict(min_item_count=0), "min_item_count"),
    (dict(domain="source"), "domain_rule"),
    (dict(domain_rule="by-genre"), "domain_rule"),
    (dict(source_format="csv", domain_rule="movielens-genre"), "item table"),
    (dict(num_shards=-1), "num_shards"),
])
def test_config_validation(settings, message):
    values = dict(source_format="movielens-1m", source_path="/data")
    values.update(settings)
    with pytest.raises(ValueError, match=message):
        IngestConfig(**values).validate()


def test_config_json_round_trip_normalises_fractions():
    config = IngestConfig("csv", "/x", split_fractions={"train": 0.9, "test": 0.1}, domain="source")
    assert config.split_fractions == (("train", 0.9), ("test", 0.1))
    assert IngestConfig.from_json(config.to_json()) == config


def test_csv_folder_domain_filter_ties_across_files_and_reused_vocabulary(tmp_path):
    data = tmp_path / "logs"
    data.mkdir()
    # Ties at t=5 across the two files: file order (a before b) decides.
    (data / "a.csv").write_text("user,item,timestamp,domain\n"
                                "u1,x,5,source\nu1,y,3,source\nu1,t1,4,target\nu2,t2,1,target\n"
                                "u3,x,1,source\n", encoding="utf-8")
    (data / "b.csv").write_text("user,item,timestamp,domain\n"
                                "u1,z,5,source\nu3,w,2,source\nu3,x,2,\n", encoding="utf-8")
    given = Vocabulary.from_counts("item", {"x": 5, "y": 1})
    config = IngestConfig("csv", str(data), domain="source", max_reject_fraction=0.5,
                          split_fractions=(("train", 1.0),))
    summary = run_ingestion(config, *_outputs(tmp_path), vocabulary=given)
    # u1: y(3) x(5, a.csv) z(5, b.csv); u3: x(1) w(2); u2 only has target items.
    decoded = _decoded(str(tmp_path / "examples"), given, ("train",))["train"]
    assert decoded == {"u1": [("y", 3), ("x", 5), ("<unk>", 5)], "u3": [("x", 1), ("<unk>", 2)]}
    assert summary.unknown_items == 2
    assert summary.filtered == 2 and summary.rejected == 1 and summary.read == 8
    assert summary.kept + summary.truncated + summary.filtered + summary.dropped + summary.rejected == summary.read
    assert Vocabulary.load(str(tmp_path / "vocabulary")) == given
    rejects = beam_steps.read_rejects(str(tmp_path / "rejects"))
    assert [(r.reason, r.line_number, r.line) for r in rejects if r.line_number] == [
        ("missing_domain", 4, "u3,x,2,")]
    assert [(r.reason, r.line) for r in rejects if r.line_number is None] == [(EMPTY_SEQUENCE, "u2")]
    assert summary.rejects_by_reason == {"missing_domain": 1, EMPTY_SEQUENCE: 1}


def test_peterrec_csv_keeps_the_source_field(tmp_path):
    path = tmp_path / "coldrec.csv"
    path.write_text("0,0,11,12,13,,901,902\n21,22,,903\n0,0,0,,904\n", encoding="utf-8")
    summary = run_ingestion(IngestConfig("peterrec-csv", str(path), max_len=2, split_fractions=(("train", 1.0),)),
                            *_outputs(tmp_path))
    vocabulary = Vocabulary.load(str(tmp_path / "vocabulary"))
    decoded = _decoded(str(tmp_path / "examples"), vocabulary, ("train",))["train"]
    assert decoded == {"1": [("12", 1), ("13", 2)], "2": [("21", 0), ("22", 1)]}
    assert set(vocabulary.tokens) == {"11", "12", "13", "21", "22"}  # "11" was truncated, still counted
    # 3 + 2 source items, 4 target items filtered; the target-only line 3 is an empty sequence.
    assert (summary.read, summary.kept, summary.truncated, summary.filtered) == (9, 4, 1, 4)
    assert summary.rejects_by_reason == {EMPTY_SEQUENCE: 1}


def test_rejects_file_lines_are_json_with_the_offending_line(movielens_run):
    root, _, _, _ = movielens_run
    files = beam_steps.reject_files(str(root / "rejects"))
    assert files
    for path in files:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                data = json.loads(line)
                assert set(data) == {"reason", "source", "line_number", "line", "detail"}
                assert Reject.from_json_line(line).line in GARBAGE


def test_whole_histories_by_default_and_rare_items_counted(tmp_path):
    lines = _movielens_lines(seed=11, users=12)
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    config = IngestConfig("movielens-1m", str(folder), min_item_count=2)
    assert config.max_len is None
    summary = run_ingestion(config, *_outputs(tmp_path))
    assert (summary.kept, summary.truncated, summary.read) == (len(lines), 0, len(lines))
    counts = collections.Counter(line.split("::")[1] for line in lines)
    rare = {item for item, count in counts.items() if count < 2}
    assert rare  # the data has items seen once
    assert summary.rare_items == len(rare)
    assert summary.unknown_items == sum(counts[item] for item in rare)
    vocabulary = Vocabulary.load(str(tmp_path / "vocabulary"))
    decoded = _decoded(str(tmp_path / "examples"), vocabulary)
    got = {user: seq for rows in decoded.values() for user, seq in rows.items()}
    longest = max(len(seq) for seq in got.values())
    assert longest == max(collections.Counter(line.split("::")[0] for line in lines).values())
    assert "items below min_item_count" in summary.format_table() and "no cap" in summary.format_table()


def test_max_len_must_be_a_positive_integer_or_none():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="max_len"):
            IngestConfig("movielens-1m", "x", max_len=bad).validate()
    IngestConfig("movielens-1m", "x", max_len=None).validate()


def _all_files(folder):
    found = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(parent, name), "rb") as handle:
                data = handle.read()
            if name == beam_steps.SUMMARY_FILE:  # its wall time is the one figure that differs
                data = json.dumps({k: v for k, v in json.loads(data).items() if k != "elapsed_seconds"}).encode()
            found[os.path.relpath(os.path.join(parent, name), folder)] = data
    return found


def test_the_same_input_gives_byte_identical_files(movielens_run, tmp_path):
    """Two fresh runs (many chunks, several shards): every file equal, byte for byte."""
    root = movielens_run[0]
    config = IngestConfig("movielens-1m", str(root / "ml-1m"), max_len=MAX_LEN, max_reject_fraction=0.5,
                          chunk_bytes=200, num_shards=3)
    runs = []
    for name in ("first", "second"):
        run_ingestion(config, *_outputs(tmp_path / name))
        runs.append(_all_files(tmp_path / name))
    assert runs[0] == runs[1]
    assert sorted(path for path in runs[0] if path.startswith("examples")) == [
        os.path.join("examples", f"Split-{split}", f"data_tfrecord-0000{i}-of-00003.gz")
        for split in ("eval", "test", "train") for i in range(3)]
    assert not any(".peterrec-staging" in path for path in runs[0])
