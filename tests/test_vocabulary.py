"""The vocabulary artifact: frequency order, reserved ids, fingerprints, persistence, bad files."""

import json

import pytest

from peterrec.components import ids
from peterrec.components.vocabulary import (
    FILENAME, Vocabulary, VocabularyError, VocabularyMismatchError, fingerprint_of)

COUNTS = {"b": 5, "a": 5, "c": 9, "d": 1}


def test_ids_follow_reserved_tokens_then_descending_count_ties_by_token():
    vocabulary = Vocabulary.from_counts("item", COUNTS)
    assert vocabulary.all_tokens() == [ids.PAD_TOKEN, ids.MASK_TOKEN, ids.TCL_TOKEN, ids.UNK_TOKEN,
                                       "c", "a", "b", "d"]
    assert [vocabulary.lookup(t) for t in ("c", "a", "b", "d")] == [4, 5, 6, 7]
    assert vocabulary.lookup(ids.PAD_TOKEN) == ids.PAD_ID == 0
    assert vocabulary.lookup(ids.MASK_TOKEN) == ids.MASK_ID
    assert vocabulary.lookup(ids.TCL_TOKEN) == ids.TCL_ID
    assert len(vocabulary) == ids.NUM_RESERVED + 4 and vocabulary.num_reserved == ids.NUM_RESERVED
    assert vocabulary.count_of(4) == 9 and vocabulary.count_of(ids.PAD_ID) == 0


def test_unknown_items_map_to_unk_but_targets_and_labels_refuse():
    assert Vocabulary.from_counts("item", COUNTS).lookup_many(["a", "zz"]) == [5, ids.UNK_ID]
    target = Vocabulary.from_counts("target", COUNTS)
    assert target.lookup("c") == 1 and target.token(0) == ids.PAD_TOKEN
    label = Vocabulary.from_counts("label", {"M": 2, "F": 1})
    assert label.all_tokens() == ["M", "F"] and label.lookup("F") == 1
    with pytest.raises(KeyError):
        target.lookup("zz")
    with pytest.raises(KeyError):
        label.lookup("X")
    with pytest.raises(KeyError):
        label.token(2)


def test_min_count_and_max_size():
    vocabulary = Vocabulary.from_counts("item", COUNTS, min_count=2, max_size=2)
    assert list(vocabulary.tokens) == ["c", "a"]
    assert vocabulary.lookup("d") == ids.UNK_ID


def test_construction_errors():
    with pytest.raises(VocabularyError, match="kind"):
        Vocabulary("words", ["a"], [1])
    with pytest.raises(VocabularyError, match="duplicate"):
        Vocabulary("item", ["a", "a"], [1, 1])
    with pytest.raises(VocabularyError, match="reserved"):
        Vocabulary("item", [ids.UNK_TOKEN], [1])
    with pytest.raises(VocabularyError, match="counts"):
        Vocabulary("item", ["a"], [])


def test_fingerprint_depends_on_order_kind_and_tokens_only():
    one = Vocabulary.from_counts("item", COUNTS)
    assert one.fingerprint == Vocabulary.from_counts("item", dict(reversed(list(COUNTS.items())))).fingerprint
    assert one.fingerprint != Vocabulary.from_counts("target", COUNTS).fingerprint
    assert one.fingerprint != Vocabulary("item", ["a", "c", "b", "d"], [1, 1, 1, 1]).fingerprint
    assert one.fingerprint == fingerprint_of("item", ids.ITEM_RESERVED_TOKENS, ["c", "a", "b", "d"])


def test_check_raises_a_clear_mismatch_error():
    built = Vocabulary.from_counts("item", COUNTS)
    other = Vocabulary.from_counts("item", {"a": 1})
    built.check(built.fingerprint)
    with pytest.raises(VocabularyMismatchError, match="vocabulary mismatch for fine-tuning.*different vocabularies"):
        built.check(other.fingerprint, what="fine-tuning")


def test_save_load_round_trip_file_and_folder(tmp_path):
    vocabulary = Vocabulary.from_counts("item", COUNTS)
    written = vocabulary.save(str(tmp_path))
    assert written == str(tmp_path / FILENAME)
    assert Vocabulary.load(str(tmp_path)) == vocabulary
    assert Vocabulary.load(written, expected_fingerprint=vocabulary.fingerprint) == vocabulary
    with pytest.raises(VocabularyMismatchError):
        Vocabulary.load(written, expected_fingerprint="0" * 64)
    data = json.loads((tmp_path / FILENAME).read_text())
    assert data["tokens"] == ["c", "a", "b", "d"] and data["counts"] == [9, 5, 5, 1]


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: "{not json", "not valid JSON"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "tokens"}), "not a vocabulary"),
    (lambda d: json.dumps(dict(d, tokens=["c", "b", "a", "d"])), "fingerprint does not match"),
    (lambda d: json.dumps(dict(d, format_version=99)), "format 99"),
    (lambda d: json.dumps(dict(d, reserved=["<pad>"])), "reserved tokens"),
])
def test_corrupt_files_are_refused(tmp_path, corrupt, message):
    path = Vocabulary.from_counts("item", COUNTS).save(str(tmp_path / "v.json"))
    data = json.loads(open(path).read())
    with open(path, "w") as handle:
        handle.write(corrupt(data))
    with pytest.raises(VocabularyError, match=message):
        Vocabulary.load(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(VocabularyError, match="no vocabulary"):
        Vocabulary.load(str(tmp_path / "nothing"))


def _ranked_in_beam(kind, counts, min_count, pieces, folder):
    """Runs ``vocabulary_ranking.RankTokens`` in Beam; returns (assembled vocabulary, token ids, piece count)."""
    import glob
    import os

    import apache_beam as beam

    from peterrec.components import vocabulary_ranking

    with beam.Pipeline() as pipeline:
        lines, token_ids = vocabulary_ranking.RankTokens(kind, min_count, "Test", pieces=pieces).apply(
            pipeline | beam.Create(sorted(counts.items())))
        _ = lines | "WriteLines" >> beam.io.WriteToText(os.path.join(folder, "lines"))
        _ = token_ids | beam.Map(json.dumps) | "WriteIds" >> beam.io.WriteToText(os.path.join(folder, "ids"))

    def read(name):
        return [line for path in glob.glob(os.path.join(folder, name + "-*")) for line in open(path).read().splitlines()]

    piece_lines = read("lines")
    return (vocabulary_ranking.assemble(kind, piece_lines), dict(json.loads(line) for line in read("ids")),
            len(piece_lines))


def test_ranking_in_pieces_gives_from_counts_byte_for_byte(tmp_path):
    """Ties across many pieces (few distinct counts, many tokens): the ids are exact, whatever the cuts."""
    import random

    rng = random.Random(4)
    counts = {f"t{rng.randint(0, 10 ** 6)}x{n}": rng.choice([1, 1, 1, 2, 2, 3, 7, 40]) for n in range(1200)}
    for kind, min_count in (("item", 2),):
        vocabulary, token_ids, pieces = _ranked_in_beam(kind, counts, min_count, 8, str(tmp_path / f"{kind}{min_count}"))
        expected = Vocabulary.from_counts(kind, counts, min_count=min_count)
        assert json.dumps(vocabulary.to_json_dict()) == json.dumps(expected.to_json_dict())
        assert token_ids == {token: expected.lookup(token) for token in expected.tokens}
        assert pieces > 6  # the big count groups really were cut
