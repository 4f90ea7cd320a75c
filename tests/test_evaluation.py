"""peterrec.trainer.evaluation: the evaluator's maths on hand-made examples and a stand-in model
(metrics against baselines from the training split, the blessing decision, clear errors)."""

import types

import numpy as np
import pytest

from peterrec.trainer import evaluation


def _write_split(root, split, examples):
    """Writes ``examples`` (``make_example`` keyword dicts) as one GZIP TFRecord file of ``split``."""
    import tensorflow as tf

    from peterrec.components import example_format

    folder = example_format.split_dir(str(root), split)
    tf.io.gfile.makedirs(folder)
    options = tf.io.TFRecordOptions(compression_type=example_format.COMPRESSION)
    with tf.io.TFRecordWriter(f"{folder}/{example_format.FILE_PREFIX}-00000.gz", options) as writer:
        for index, fields in enumerate(examples):
            writer.write(example_format.make_example(f"u{index}", **fields).SerializeToString())


class _Model:
    """A stand-in task model: the scores of a batch come from ``score(item_ids)`` ([B, C])."""

    def __init__(self, score, num_outputs=2, num_reserved=1):
        self.score = score
        self.config = types.SimpleNamespace(num_outputs=num_outputs)
        self.head = types.SimpleNamespace(num_reserved=num_reserved)

    def __call__(self, inputs, training=False):
        assert training is False
        return self.score(np.asarray(inputs["item_ids"]))


def test_ranking_values_follow_the_definitions():
    ranks = np.array([1, 3, 11])
    values = evaluation.ranking_values(ranks, ["hr@10", "ndcg@10", "mrr@5", "hr@1"])
    assert values["hr@10"] == pytest.approx(2 / 3)
    assert values["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert values["mrr@5"] == pytest.approx((1 + 1 / 3) / 3)
    assert values["hr@1"] == pytest.approx(1 / 3)
    assert evaluation.parse_ranking_metric("ndcg@20") == ("ndcg", 20)
    for bad in ("hr@0", "auc@10", "hr10", 10):
        with pytest.raises(ValueError, match="hr@K, ndcg@K or mrr@K"):
            evaluation.parse_ranking_metric(bad)


def test_blessing_needs_both_the_lift_over_the_baseline_and_the_floor():
    threshold = types.SimpleNamespace(metric="hr@10", baseline="popularity", min_lift=0.1, min_value=0.5)
    assert evaluation.decide_blessing(0.61, 0.5, threshold) == (
        True, "hr@10 0.6100 beats the popularity baseline 0.5000 + min_lift 0.1; hr@10 0.6100 reaches min_value 0.5")
    blessed, reason = evaluation.decide_blessing(0.55, 0.3, threshold)
    assert blessed and "beats" in reason
    blessed, reason = evaluation.decide_blessing(0.45, 0.3, threshold)
    assert not blessed and reason.endswith("is below min_value 0.5"), "beating the baseline is not enough"
    assert not evaluation.decide_blessing(0.6, 0.5, threshold)[0], "the lift must be exceeded, not met"
    floor_only = types.SimpleNamespace(metric="accuracy", baseline="none", min_lift=0.0, min_value=0.7)
    assert evaluation.decide_blessing(0.7, None, floor_only) == (True, "accuracy 0.7000 reaches min_value 0.7")


def test_classification_is_compared_with_the_majority_class_of_the_training_split(tmp_path):
    _write_split(tmp_path, "train", [{"item_ids": [5, 6], "label": label} for label in (0, 0, 1)])
    # The test split: the model predicts class 1 for users whose last item is 9, else 0.
    _write_split(tmp_path, "test", [{"item_ids": [5, 9], "label": 1}, {"item_ids": [6, 9], "label": 1},
                                    {"item_ids": [7, 8], "label": 0}, {"item_ids": [7, 9], "label": 0}])
    model = _Model(lambda ids: np.stack([ids[:, -1] != 9, ids[:, -1] == 9], axis=1).astype(np.float32))
    result = evaluation.evaluate_classification(model, str(tmp_path), "test", max_len=4, batch_size=3,
                                                num_classes=2)
    assert result["examples"] == 4 and result["majority_class_id"] == 0
    assert result["model"]["accuracy"] == pytest.approx(0.75)
    assert result["baseline"]["accuracy"] == pytest.approx(0.5)
    assert result["model"]["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert result["baseline"]["macro_f1"] == pytest.approx(1 / 3), "class 1 never predicted: F1 0 for it"


def test_cold_start_ranks_every_target_against_popularity(tmp_path):
    # Target ids 1..4 are real (id 0 pads); in training, item 4 is the most frequent, then 3.
    _write_split(tmp_path, "train", [{"item_ids": [5], "target_item_ids": t} for t in ([4, 3], [4], [4, 3, 2])])
    _write_split(tmp_path, "test", [{"item_ids": [5], "target_item_ids": [1]},
                                    {"item_ids": [6], "target_item_ids": [2, 4]}])
    # The model scores item 1 highest, then 2, 3, 4 (the reverse of popularity).
    model = _Model(lambda ids: np.tile(np.array([[9.0, 4.0, 3.0, 2.0, 1.0]], np.float32), (len(ids), 1)),
                   num_outputs=5, num_reserved=1)
    result = evaluation.evaluate_cold_start(model, str(tmp_path), "test", max_len=3, batch_size=8,
                                            metric_names=["hr@1"])
    assert result["examples"] == 3, "one (user, target) pair per real target"
    assert sorted(result["model"]) == ["hr@1", "hr@10", "mrr@5", "ndcg@10"]
    # Model ranks of targets 1, 2, 4: 1, 2, 4. Popularity ranks (4 > 3 > 2 > 1): 4, 3, 1.
    assert result["model"]["hr@1"] == pytest.approx(1 / 3)
    assert result["model"]["mrr@5"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert result["baseline"]["hr@1"] == pytest.approx(1 / 3)
    assert result["baseline"]["mrr@5"] == pytest.approx((1 / 4 + 1 / 3 + 1) / 3)


def test_empty_data_is_an_evaluation_error(tmp_path):
    _write_split(tmp_path, "train", [{"item_ids": [5], "label": 0}])
    _write_split(tmp_path, "test", [])
    model = _Model(lambda ids: np.zeros((len(ids), 2), np.float32))
    with pytest.raises(evaluation.EvaluationError, match="split 'test' has no examples"):
        evaluation.evaluate_classification(model, str(tmp_path), "test", 4, 8, 2)
    _write_split(tmp_path, "train", [])
    with pytest.raises(evaluation.EvaluationError, match="training split has no examples"):
        evaluation.evaluate_classification(model, str(tmp_path), "test", 4, 8, 2)
