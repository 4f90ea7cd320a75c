"""TensorBoard on a training run's logs: started on a free loopback port, read through its
scalars API (the runs, the tags, one point per epoch) and its projector API (the item
embeddings); and the ``peterrec tensorboard`` command. tests/test_tensorboard_browser.py looks
at the same views in a browser."""

import pytest

EPOCHS = 2


@pytest.fixture(scope="module")
def training_logs(tmp_path_factory):
    """A tiny pretraining run (2 epochs) whose TensorBoard logs the tests read."""
    from peterrec.trainer import tiny_examples
    from peterrec.trainer.pretrain import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("tensorboard")
    data = tiny_examples.write_tiny_dataset(str(root / "data"))
    config = PretrainConfig.from_dict({"backbone": {"embedding_dim": 8, "dilations": [1, 2]}, "epochs": EPOCHS,
                                       "batch_size": 32, "early_stopping_patience": 0, "verbose": 0})
    output = root / "run"
    pretrain(data.pretrain_examples, data.item_vocabulary_dir, str(output), config)
    return str(output / "logs")


def test_tensorboard_serves_the_scalars_of_a_training_run(training_logs):
    from peterrec.pipeline.tensorboard import TensorBoardProcess, event_dirs

    assert {d.rsplit("/", 1)[-1] for d in event_dirs(training_logs)} >= {"train", "validation"}
    with TensorBoardProcess(training_logs) as board:
        assert board.url.startswith("http://127.0.0.1:")
        tags = board.wait_for_scalars(runs=["train", "validation"])
        assert "epoch_loss" in tags["train"] and "epoch_loss" in tags["validation"], tags
        points = board.scalars("train", "epoch_loss")
        assert [step for _, step, _ in points] == list(range(EPOCHS))
        assert all(value > 0 for _, _, value in points)
        validation_metrics = [tag for tag in tags["validation"] if "ndcg" in tag or "hr" in tag]
        assert validation_metrics, tags["validation"]
        assert board.get("/data/plugin/projector/runs") == ["projector"]
        [embedding] = board.get("/data/plugin/projector/info", {"run": "projector"})["embeddings"]
        assert embedding["tensorName"] == "item_embedding/.ATTRIBUTES/VARIABLE_VALUE"
        assert embedding["tensorShape"][1] == 8
        process = board.process
    assert process.poll() is not None, "the TensorBoard process is stopped on exit"


def test_tensorboard_command_is_registered_with_a_loopback_default():
    from peterrec.cli import build_parser

    args = build_parser().parse_args(["tensorboard", "--logdir", "runs/x"])
    assert (args.logdir, args.port, args.host) == ("runs/x", 6006, "127.0.0.1")
    assert args.handler.__name__ == "_tensorboard"


def test_tensorboards_own_command_starts_in_the_pinned_environment():
    """TensorBoard 2.16's ``tensorboard`` command imports pkg_resources (setuptools < 81, pinned)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from tensorboard.main import run_main; run_main()", "--help"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--logdir" in done.stdout
