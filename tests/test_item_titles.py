"""Item titles: MovieLens item tables -> ``item_titles.tsv`` next to the item vocabulary -> projector labels."""

import os
import shutil

import pytest

from peterrec.components.ingest import IngestConfig, run_ingestion
from peterrec.components.vocabulary import (
    TITLES_FILENAME, Vocabulary, VocabularyError, load_item_titles, write_item_titles)

RATINGS = ["1::10::5::100", "1::20::4::101", "1::30::3::102", "2::10::5::100", "2::40::4::101",
           "3::20::3::100", "3::50::1::101", "3::10::2::102"]
MOVIES = ["10::Toy Story (1995)::Animation|Children's|Comedy",
          "20::Heat (1995)::Action|Crime|Thriller",
          "30::Cit\u00e9 des enfants perdus, La (1995)::Adventure|Sci-Fi",
          "40::Alien (1979)::Horror|Sci-Fi",
          "60::Never Rated (2000)::Drama",          # not in the ratings: not in the vocabulary
          "broken movie line"]                     # item 50 has no line at all: no title


def _movielens_folder(root):
    folder = root / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("\n".join(RATINGS) + "\n", encoding="latin-1")
    (folder / "movies.dat").write_text("\n".join(MOVIES) + "\n", encoding="latin-1")
    return folder


def _ingest(root, config):
    vocabulary_dir = str(root / "vocabulary")
    run_ingestion(config, str(root / "examples"), vocabulary_dir, str(root / "rejects"))
    return vocabulary_dir


def _lines(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_ingestion_writes_the_titles_of_the_vocabulary_items_in_id_order(tmp_path):
    vocabulary_dir = _ingest(tmp_path, IngestConfig("movielens-1m", str(_movielens_folder(tmp_path)),
                                                    split_fractions=(("train", 1.0),)))
    vocabulary = Vocabulary.load(vocabulary_dir)
    assert vocabulary.tokens == ("10", "20", "30", "40", "50")  # by count, ties by token
    assert _lines(os.path.join(vocabulary_dir, TITLES_FILENAME)) == [
        "10\tToy Story (1995)", "20\tHeat (1995)", "30\tCit\u00e9 des enfants perdus, La (1995)",
        "40\tAlien (1979)"]
    assert load_item_titles(vocabulary_dir)["30"] == "Cit\u00e9 des enfants perdus, La (1995)"


def test_a_domain_rule_keeps_the_titles_of_the_kept_domain(tmp_path):
    config = IngestConfig("movielens-1m", str(_movielens_folder(tmp_path) / "ratings.dat"), domain="source",
                          domain_rule="movielens-genre", split_fractions=(("train", 1.0),), max_reject_fraction=0.5)
    vocabulary_dir = _ingest(tmp_path, config)
    assert Vocabulary.load(vocabulary_dir).tokens == ("10", "30")  # Heat and Alien are target movies
    assert load_item_titles(vocabulary_dir) == {"10": "Toy Story (1995)",
                                                "30": "Cit\u00e9 des enfants perdus, La (1995)"}


def test_no_titles_file_for_sources_without_titles(tmp_path):
    data = tmp_path / "log.csv"
    data.write_text("user,item,timestamp\nu1,a,1\nu1,b,2\nu2,a,1\n", encoding="utf-8")
    vocabulary_dir = tmp_path / "vocabulary"
    vocabulary_dir.mkdir()
    (vocabulary_dir / TITLES_FILENAME).write_text("a\tstale title of an earlier run\n", encoding="utf-8")
    _ingest(tmp_path, IngestConfig("csv", str(data), split_fractions=(("train", 1.0),)))
    assert sorted(os.listdir(vocabulary_dir)) == ["vocabulary.json"]
    assert load_item_titles(str(vocabulary_dir)) is None


def test_titles_file_escapes_tabs_newlines_and_backslashes(tmp_path):
    vocabulary = Vocabulary.from_counts("item", {"1": 3, "2": 2, "3": 1})
    titles = {"1": "A\tB", "2": "line\nbreak \\ and \\t", "9": "not in the vocabulary"}
    vocabulary.save(str(tmp_path))
    path = write_item_titles(vocabulary, titles, str(tmp_path))
    assert len(_lines(path)) == 2  # item 3 has no title, item 9 is not in the vocabulary
    assert load_item_titles(str(tmp_path)) == {"1": "A\tB", "2": "line\nbreak \\ and \\t"}
    assert load_item_titles(os.path.join(str(tmp_path), "vocabulary.json")) == load_item_titles(str(tmp_path))
    assert write_item_titles(vocabulary, {"9": "no vocabulary item"}, str(tmp_path / "none")) is None
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("3 without a tab\n")
    with pytest.raises(VocabularyError, match="line 3"):
        load_item_titles(str(tmp_path))


def test_pretraining_labels_the_projector_with_the_titles(tmp_path):
    from peterrec.trainer import tiny_examples
    from peterrec.trainer.config import BackboneConfig
    from peterrec.trainer.pretrain import PretrainConfig, pretrain

    dataset = tiny_examples.write_tiny_dataset(str(tmp_path / "tiny"), num_users=24, num_items=12)
    vocabulary_dir = str(tmp_path / "vocabulary")
    shutil.copytree(dataset.item_vocabulary_dir, vocabulary_dir)
    vocabulary = dataset.item_vocabulary
    titled = vocabulary.tokens[:3]
    write_item_titles(vocabulary, {token: f"Movie\t{token}" for token in titled}, vocabulary_dir)
    config = PretrainConfig(backbone=BackboneConfig(vocab_size=0, embedding_dim=8, dilations=(1, 2)),
                            batch_size=16, epochs=1, max_len=8, early_stopping_patience=0, verbose=0)
    output = str(tmp_path / "run")
    pretrain(dataset.pretrain_examples, vocabulary_dir, output, config)
    rows = [line.split("\t") for line in _lines(os.path.join(output, "logs", "projector", "metadata.tsv"))]
    assert rows[0] == ["title", "item"]
    expected = [[f"Movie {token}" if token in titled else token, token] for token in vocabulary.all_tokens()]
    assert rows[1:] == expected
