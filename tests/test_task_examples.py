"""Task examples: attribute labels joined per user, cold-start targets with held-out users."""

import collections

import pytest

from peterrec.components import beam_steps, example_format, splits, synthetic
from peterrec.components.records import (
    DUPLICATE_USER, EMPTY_SEQUENCE, MALFORMED_LINE, MISSING_LABEL, NO_TARGET_ITEMS, UNKNOWN_ITEM, UNKNOWN_LABEL,
    UNKNOWN_USER, IngestError)
from peterrec.components.task_examples import (
    AttributeTaskConfig, ColdStartTaskConfig, TaskSummary, run_attribute_task, run_cold_start_task)
from peterrec.components.vocabulary import Vocabulary, VocabularyMismatchError

FRACTIONS = (("train", 0.5), ("eval", 0.25), ("test", 0.25))
MOVIES = {1: "Comedy", 2: "Drama|Action", 3: "Action|Drama", 4: "Horror", 5: "Animation", 6: "Sci-Fi|Comedy",
          7: "Thriller", 8: "Romance"}
TARGET_MOVIES = {"3", "4", "6", "7"}


def _movielens_folder(root, users=24):
    """ratings.dat / users.dat / movies.dat: user u rates movies in a fixed pattern."""
    folder = root / "ml-1m"
    folder.mkdir()
    ratings = []
    for user in range(1, users + 1):
        for step in range(user % 7 + 3):
            movie = (user + 3 * step) % 8 + 1
            ratings.append(f"{user}::{movie}::4::{1000 + step}")
    ratings.append(f"{users + 1}::1::4::5")   # only source items: no target
    ratings.append(f"{users + 2}::4::4::5")   # only a target item: empty source sequence
    ratings.append("1::99::4::2000")          # movie 99 is not in movies.dat
    (folder / "ratings.dat").write_text("\n".join(ratings) + "\n", encoding="latin-1")
    (folder / "movies.dat").write_text("".join(f"{m}::Movie {m} (2000)::{g}\n" for m, g in MOVIES.items()),
                                       encoding="latin-1")
    user_lines = [f"{u}::{'F' if u % 2 else 'M'}::25::1::00000" for u in range(1, users + 3) if u != 3]
    user_lines.insert(2, "2::F::18::1::00000")   # a second line for user 2
    user_lines.append("500::M::25::1::00000")    # no ratings
    user_lines.append("501::M")                  # malformed
    (folder / "users.dat").write_text("\n".join(user_lines) + "\n", encoding="latin-1")
    return folder, ratings, user_lines


def _item_vocabulary():
    return Vocabulary.from_counts("item", {str(m): 10 - m for m in MOVIES})


def _examples(root, split_names):
    return {split: {row["user_id"]: row for row in map(example_format.example_to_dict,
                                                        example_format.read_examples(root, split))}
            for split in split_names}


def _accounted(summary):
    return summary.kept + summary.truncated + summary.filtered + summary.dropped + summary.rejected


@pytest.fixture(scope="module")
def attribute_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribute")
    folder, ratings, user_lines = _movielens_folder(root)
    config = AttributeTaskConfig("movielens-1m", str(folder), attribute="gender", max_len=4,
                                 split_fractions=FRACTIONS, max_reject_fraction=0.2)
    vocabulary = _item_vocabulary()
    summary = run_attribute_task(config, str(root / "examples"), str(root / "labels"), str(root / "rejects"),
                                 vocabulary, expected_vocabulary_fingerprint=vocabulary.fingerprint)
    return root, ratings, user_lines, summary


def test_attribute_examples_carry_labels_of_the_label_vocabulary(attribute_run):
    root, _, _, summary = attribute_run
    labels = Vocabulary.load(str(root / "labels"))
    assert labels.kind == "label" and set(labels.tokens) == {"F", "M"}
    examples = _examples(str(root / "examples"), ("train", "eval", "test"))
    users = {user: row for rows in examples.values() for user, row in rows.items()}
    assert len(users) == summary.users
    for user, row in users.items():
        assert labels.token(row["label"]) == ("F" if int(user) % 2 else "M")
        assert 1 <= len(row["item_ids"]) <= 4
    for split, rows in examples.items():
        assert all(splits.assign_split(u, FRACTIONS) == split for u in rows)
        assert sum(summary.labels_by_split[split].values()) == len(rows)
    assert "3" not in users and "500" not in users
    assert summary.task_vocabulary_fingerprint == labels.fingerprint


def test_attribute_rejects_name_every_reason(attribute_run):
    root, ratings, user_lines, summary = attribute_run
    rejects = beam_steps.read_rejects(str(root / "rejects"))
    by_reason = collections.defaultdict(list)
    for reject in rejects:
        by_reason[reject.reason].append(reject)
    assert [r.line for r in by_reason[MISSING_LABEL]] == ["3"]
    assert [r.line for r in by_reason[UNKNOWN_USER]] == ["500::M::25::1::00000"]
    assert [r.line for r in by_reason[DUPLICATE_USER]] == ["2::F::18::1::00000"]
    assert [(r.line, r.line_number) for r in by_reason[MALFORMED_LINE]] == [("501::M", len(user_lines))]
    assert summary.label_lines == len(user_lines) and summary.label_rejected == 1
    assert summary.read == len(ratings) and summary.rejected == 0
    assert _accounted(summary) == summary.read
    assert summary.dropped > 0  # user 3's ratings


def test_attribute_task_refuses_a_different_vocabulary(tmp_path):
    folder, _, _ = _movielens_folder(tmp_path)
    other = Vocabulary.from_counts("item", {"1": 1})
    config = AttributeTaskConfig("movielens-1m", str(folder), attribute="gender")
    with pytest.raises(VocabularyMismatchError, match="vocabulary mismatch"):
        run_attribute_task(config, str(tmp_path / "e"), str(tmp_path / "l"), str(tmp_path / "r"), other,
                           expected_vocabulary_fingerprint=_item_vocabulary().fingerprint)
    with pytest.raises(IngestError, match="attribute"):
        run_attribute_task(AttributeTaskConfig("movielens-1m", str(folder), attribute="height"),
                           str(tmp_path / "e"), str(tmp_path / "l"), str(tmp_path / "r"), other)


@pytest.fixture(scope="module")
def cold_start_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("coldstart")
    folder, ratings, _ = _movielens_folder(root)
    config = ColdStartTaskConfig("movielens-1m", str(folder), domain_rule="movielens-genre", max_len=3,
                                 split_fractions=FRACTIONS, max_target_items=1, max_reject_fraction=0.2)
    summary = run_cold_start_task(config, str(root / "examples"), str(root / "targets"), str(root / "rejects"),
                                  _item_vocabulary())
    return root, ratings, summary


def _expected_cold_start(ratings):
    per_user = collections.defaultdict(list)
    for number, line in enumerate(ratings, start=1):
        user, movie, _, ts = line.split("::")
        if movie in {str(m) for m in MOVIES}:
            per_user[user].append((int(ts), number, movie))
    expected = {}
    for user, events in per_user.items():
        events.sort()
        source = [m for _, _, m in events if m not in TARGET_MOVIES][-3:]
        target = [m for _, _, m in events if m in TARGET_MOVIES]
        if source and target:
            expected[user] = (source, target)
    return expected


def test_cold_start_examples_hold_source_sequences_and_target_items(cold_start_run):
    root, ratings, summary = cold_start_run
    items = _item_vocabulary()
    targets = Vocabulary.load(str(root / "targets"))
    assert targets.kind == "target" and set(targets.tokens) <= TARGET_MOVIES
    examples = _examples(str(root / "examples"), ("train", "eval", "test"))
    expected = _expected_cold_start(ratings)
    got = {}
    for split, rows in examples.items():
        for user, row in rows.items():
            assert splits.assign_split(user, FRACTIONS) == split  # eval/test users are held out entirely
            got[user] = ([items.token(i) for i in row["item_ids"]],
                         [targets.token(i) for i in row["target_item_ids"]])
            source, target = expected[user]
            assert got[user][0] == source
            # Train users keep their earliest target item only; held-out users keep them all.
            assert got[user][1] == (target[:1] if split == "train" else target)
    assert set(got) == set(expected)
    assert sum(len(rows) for rows in examples.values()) == summary.users
    assert all(summary.users_by_split[s] > 0 for s in ("train", "eval", "test"))


def test_cold_start_rejects_and_accounting(cold_start_run):
    root, ratings, summary = cold_start_run
    rejects = beam_steps.read_rejects(str(root / "rejects"))
    reasons = {(r.reason, r.line) for r in rejects}
    assert (NO_TARGET_ITEMS, "25") in reasons and (EMPTY_SEQUENCE, "26") in reasons
    assert (UNKNOWN_ITEM, "1::99::4::2000") in reasons
    assert summary.read == len(ratings) and summary.rejected == 1
    assert _accounted(summary) == summary.read
    assert summary.target_items_truncated > 0 and summary.target_items_kept > 0
    assert summary.task == "cold_start" and summary.task_vocabulary_kind == "target"
    assert TaskSummary.from_json(summary.to_json()) == summary
    assert "target vocabulary" in summary.format_table()


def test_cold_start_on_peterrec_csv(tmp_path):
    path = tmp_path / "coldrec.csv"
    path.write_text("0,0,11,12,13,,901,902\n21,22,,903\n31,32\n", encoding="utf-8")
    items = Vocabulary.from_counts("item", {"11": 1, "12": 1, "13": 1, "21": 1, "22": 1})
    config = ColdStartTaskConfig("peterrec-csv", str(path), split_fractions=(("train", 1.0),))
    summary = run_cold_start_task(config, str(tmp_path / "examples"), str(tmp_path / "targets"),
                                  str(tmp_path / "rejects"), items)
    targets = Vocabulary.load(str(tmp_path / "targets"))
    rows = _examples(str(tmp_path / "examples"), ("train",))["train"]
    assert {u: ([items.token(i) for i in r["item_ids"]], [targets.token(i) for i in r["target_item_ids"]])
            for u, r in rows.items()} == {"1": (["11", "12", "13"], ["901", "902"]), "2": (["21", "22"], ["903"])}
    assert summary.rejects_by_reason == {NO_TARGET_ITEMS: 1}
    assert summary.unknown_items == 0 and _accounted(summary) == summary.read == 10


def test_attribute_task_on_synthetic_csv_with_a_given_label_vocabulary(tmp_path):
    paths = synthetic.generate(str(tmp_path / "data"), synthetic.SyntheticConfig(
        users=30, source_items=20, target_items=10, min_source_len=3, max_source_len=6, min_target_len=1,
        max_target_len=2))
    items = Vocabulary.from_counts("item", {f"s{i:02d}": 1 for i in range(1, 21)})
    only_female = Vocabulary.from_counts("label", {"F": 1})
    config = AttributeTaskConfig("csv", paths.interactions, domain="source", label_path=paths.attributes["gender"],
                                 max_reject_fraction=1.0, split_fractions=(("train", 1.0),))
    summary = run_attribute_task(config, str(tmp_path / "examples"), str(tmp_path / "labels"),
                                 str(tmp_path / "rejects"), items, label_vocabulary=only_female)
    genders = dict(line.split(",") for line in open(paths.attributes["gender"]).read().split()[1:])
    females = {u for u, g in genders.items() if g == "F"}
    rows = _examples(str(tmp_path / "examples"), ("train",))["train"]
    assert set(rows) == females and all(r["label"] == 0 for r in rows.values())
    assert summary.rejects_by_reason == {UNKNOWN_LABEL: len(genders) - len(females)}
    assert summary.unknown_items == 0 and summary.filtered > 0
    assert _accounted(summary) == summary.read
    assert Vocabulary.load(str(tmp_path / "labels")) == only_female


@pytest.mark.parametrize("settings, message", [
    (dict(source_domain="a", target_domain="a"), "both"),
    (dict(max_target_items=0), "max_target_items"),
    (dict(source_format="movielens-1m"), "domain_rule"),
])
def test_cold_start_config_validation(settings, message):
    values = dict(source_format="csv", source_path="/x")
    values.update(settings)
    with pytest.raises(ValueError, match=message):
        ColdStartTaskConfig(**values).validate()
