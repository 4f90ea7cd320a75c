"""The data room's subcommands: synth -> ingest -> task-examples, wired to the library."""

import json
import os

import pytest

from peterrec import cli


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert cli.main(["synth", "--output", str(root / "data"), "--users", "40", "--source-items", "30",
                     "--target-items", "20", "--min-len", "4", "--max-len", "8"]) == 0
    return root


def test_synth_writes_the_data_set(synthetic_dir):
    data = synthetic_dir / "data"
    assert sorted(os.listdir(data)) == ["age.csv", "gender.csv", "interactions.csv", "profiles.csv",
                                        "synthetic.json"]
    assert json.loads((data / "synthetic.json").read_text())["users"] == 40


def test_synth_hard_preset_keeps_its_settings_under_size_flags(tmp_path):
    assert cli.main(["synth", "--preset", "hard", "--output", str(tmp_path), "--users", "30", "--source-items",
                     "30", "--target-items", "20", "--min-len", "4", "--max-len", "8"]) == 0
    written = json.loads((tmp_path / "synthetic.json").read_text())
    assert written["users"] == 30 and written["label_noise"] == 0.2 and written["gender_weight"] == 0.2


def test_ingest_then_task_examples(synthetic_dir, capsys):
    data, out = synthetic_dir / "data", synthetic_dir / "out"
    status = cli.main(["ingest", "--format", "csv", "--source", str(data / "interactions.csv"), "--domain", "source",
                       "--output", str(out / "pretrain"), "--max-len", "5", "--split", "train=0.5",
                       "--split", "test=0.5", "--beam-arg=--direct_num_workers=1"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "Ingestion summary" in printed and "users" in printed and "test" in printed
    assert sorted(os.listdir(out / "pretrain")) == ["examples", "rejects", "vocabulary"]
    assert sorted(os.listdir(out / "pretrain" / "examples")) == ["Split-test", "Split-train"]
    fingerprint = json.loads((out / "pretrain" / "rejects" / "summary.json").read_text())["vocabulary_fingerprint"]

    status = cli.main(["task-examples", "cold-start", "--format", "csv", "--source", str(data / "interactions.csv"),
                       "--vocabulary", str(out / "pretrain" / "vocabulary"), "--expect-fingerprint", fingerprint,
                       "--max-target-items", "2", "--output", str(out / "cold")])
    assert status == 0
    assert "Task examples (cold_start)" in capsys.readouterr().out
    assert os.path.exists(out / "cold" / "target_vocabulary" / "vocabulary.json")

    status = cli.main(["task-examples", "attribute", "--format", "csv", "--source", str(data / "interactions.csv"),
                       "--domain", "source", "--labels", str(data / "age.csv"), "--vocabulary",
                       str(out / "pretrain" / "vocabulary"), "--output", str(out / "age")])
    assert status == 0
    assert "labels in train" in capsys.readouterr().out
    assert os.path.exists(out / "age" / "label_vocabulary" / "vocabulary.json")


def test_errors_exit_with_a_message(tmp_path, capsys):
    status = cli.main(["ingest", "--format", "csv", "--source", str(tmp_path / "none.csv"), "--output",
                       str(tmp_path / "out")])
    assert status == 1
    assert "does not exist" in capsys.readouterr().err
    status = cli.main(["task-examples", "attribute", "--format", "csv", "--source", str(tmp_path / "none.csv"),
                       "--labels", "x.csv", "--vocabulary", str(tmp_path / "v"), "--output", str(tmp_path / "o")])
    assert status == 1
    assert "no vocabulary" in capsys.readouterr().err
