"""Small data: the default fine-tuning recipe beats the majority rate on the "hard" synthetic preset.

1,000 synthetic users whose gender leaves only a weak trace in what they choose (a logistic
regression on their bags of items is a few points above the majority rate:
``components.synthetic.PRESETS``). The whole path runs as a user would: generate, ingest,
build the attribute examples, pretrain a small backbone briefly, fine-tune with the
``FinetuneConfig`` defaults (peterrec-serial, tcl+mean read-out with LayerNorms, lr 3e-3 cosine,
30 epochs, patience 5 on val_loss) and score the test users.

Before the adapters worked in units of their input's scale (``trainer.patches``), a few Adam
steps made the first patch's bias swamp block 0's 0.006-scale conv signal, every user got the
same vector, and fine-tuning stayed near the majority rate even on its own training set.

What this does NOT check: beating the majority rate on the TEST users by a clear margin. On
this preset the measured test accuracy of the default recipe (with early stopping) was +1.7 and
-11.4 points from the majority rate (seeds 0 and 1, 175 test users, standard error ~3.7
points), and the run above, +1.7 (0.543 vs 0.526): the fitted patches do not carry over to
unseen users here, where a logistic regression on bags of items reaches +6 to +8 (seed 0).
With ~10 optimizer steps per epoch, patience 5 on a ~200-user val_loss restored epochs 2-7.

Slow: ingestion, a 5-epoch pretraining and a 30-epoch fine-tuning on 1,000 users take about
10 minutes on two shared cores.
"""

import collections
import os

import numpy as np
import pytest

import peterrec  # noqa: F401

# Bigger eval and test splits than ingestion's default 80/10/10: the eval loss that early
# stopping watches and the test accuracy this test checks are each over ~200 users.
SPLITS = (("train", 0.6), ("eval", 0.2), ("test", 0.2))
ATTRIBUTE = "gender"
SEED = 0


def prepare_hard_data(root: str, seed: int = SEED, attribute: str = ATTRIBUTE) -> dict:
    """Generates the hard preset, ingests it and builds one attribute task's examples; returns paths."""
    from peterrec.components import synthetic
    from peterrec.components.ingest import IngestConfig, run_ingestion
    from peterrec.components.task_examples import AttributeTaskConfig, run_attribute_task

    paths = synthetic.generate(os.path.join(root, "data"), synthetic.SyntheticConfig.preset("hard", seed=seed))
    common = dict(max_len=200, domain="source", split_fractions=SPLITS)
    pretrain_dir, task_dir = os.path.join(root, "pretrain"), os.path.join(root, attribute)
    run_ingestion(IngestConfig("csv", paths.interactions, **common), os.path.join(pretrain_dir, "examples"),
                  os.path.join(pretrain_dir, "vocabulary"), os.path.join(pretrain_dir, "rejects"))
    task = AttributeTaskConfig("csv", paths.interactions, label_format="csv",
                               label_path=paths.attributes[attribute], **common)
    run_attribute_task(task, os.path.join(task_dir, "examples"), os.path.join(task_dir, "labels"),
                       os.path.join(task_dir, "rejects"), os.path.join(pretrain_dir, "vocabulary"))
    return {"pretrain_examples": os.path.join(pretrain_dir, "examples"),
            "item_vocabulary": os.path.join(pretrain_dir, "vocabulary"),
            "task_examples": os.path.join(task_dir, "examples"), "labels": os.path.join(task_dir, "labels")}


def pretrain_small(root: str, prepared: dict, seed: int = SEED, **overrides) -> str:
    """A brief pretraining of a 32-wide backbone (default dilations); returns the export folder."""
    from peterrec.trainer.config import BackboneConfig
    from peterrec.trainer.pretrain import PretrainConfig, pretrain

    settings = dict(epochs=5, max_len=200, early_stopping_patience=0, seed=seed, verbose=0)
    config = PretrainConfig(backbone=BackboneConfig(vocab_size=0, embedding_dim=32), **{**settings, **overrides})
    metrics = pretrain(prepared["pretrain_examples"], prepared["item_vocabulary"], os.path.join(root, "backbone"),
                       config)
    return metrics["export_dir"]


def finetune_default(root: str, prepared: dict, backbone_dir: str, strategy: str = "peterrec-serial",
                     seed: int = SEED, **overrides) -> dict:
    """Fine-tunes with the FinetuneConfig defaults (but ``overrides``); returns its metrics plus the
    training split's accuracy."""
    from peterrec.trainer.config import TaskConfig
    from peterrec.trainer.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(task=TaskConfig(name=ATTRIBUTE, strategy=strategy), seed=seed,
                            task_vocabulary=prepared["labels"], item_vocabulary=prepared["item_vocabulary"],
                            verbose=0, **overrides)
    output = os.path.join(root, f"finetune_{strategy}")
    metrics = finetune(backbone_dir, prepared["task_examples"], output, config)
    metrics["train_accuracy"] = split_accuracy(prepared, metrics["patch_dir"], backbone_dir, "train")
    return metrics


def split_accuracy(prepared: dict, patch_dir: str, backbone_dir: str, split: str) -> float:
    """Accuracy of a patch artifact on one split of the task examples."""
    from peterrec.trainer import artifacts, data

    backbone, _, vocabulary = artifacts.load_backbone(backbone_dir)
    model, _ = artifacts.load_patch_artifact(patch_dir, backbone, vocabulary)
    model.compile()
    dataset = data.sequence_dataset(prepared["task_examples"], split, 256, 200, kind="classification")
    return float(model.evaluate(dataset, return_dict=True, verbose=0)["accuracy"])


def majority_rate(prepared: dict, split: str) -> float:
    """The share of the most frequent label among the split's users: the best constant guess."""
    from peterrec.components import example_format

    labels = [row["label"] for row in map(example_format.example_to_dict,
                                          example_format.read_examples(prepared["task_examples"], split))]
    return collections.Counter(labels).most_common(1)[0][1] / len(labels)


@pytest.fixture(scope="module")
def hard_run(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("small_data"))
    prepared = prepare_hard_data(root)
    backbone_dir = pretrain_small(root, prepared)
    return root, prepared, backbone_dir


@pytest.mark.slow
def test_patch_fine_tuning_learns_its_own_training_set_on_small_hard_data(hard_run):
    """The default recipe over its full 30-epoch cosine schedule (early stopping off, so the check
    is on what training reaches, not on which noisy eval epoch is restored) fits its 600 training
    users. Measured (seed 0): training accuracy 0.887 against a majority rate of 0.503; with the
    adapters' plain formula and Glorot-initialised head, 0.598 (user vectors collapsed within the
    first steps; the running training accuracy stayed at 0.49-0.59 for 20 epochs)."""
    root, prepared, backbone_dir = hard_run
    metrics = finetune_default(root, prepared, backbone_dir, early_stopping_patience=0)
    train_majority, test_majority = majority_rate(prepared, "train"), majority_rate(prepared, "test")
    report = (f"train accuracy {metrics['train_accuracy']:.3f} (majority {train_majority:.3f}), test accuracy "
              f"{metrics['accuracy']:.3f} (majority {test_majority:.3f}), macro-F1 {metrics['macro_f1']:.3f}")
    assert metrics["epochs_completed"] == 30, report
    assert metrics["train_accuracy"] >= train_majority + 0.2, report
    # Not a constant guess on unseen users either (a constant scores a macro-F1 of about 0.35 here).
    assert metrics["macro_f1"] > 0.45 and np.isfinite(metrics["loss"]), report
