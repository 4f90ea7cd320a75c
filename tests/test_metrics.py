"""Ranking and classification metrics against hand-computed values."""

import math

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf

from peterrec.trainer import metrics as m

# Vocabulary of 8 ids, 4 reserved (scores 9 there must be ignored): real ids 4..7.
SCORES = np.array([
    [9, 9, 9, 9, 0.1, 0.5, 0.3, 0.2],   # target 6 (0.3): 0.5 above -> rank 2
    [9, 9, 9, 9, 0.4, 0.4, 0.1, 0.9],   # target 4 (0.4): 0.9 above, id 5 tied -> rank 3
    [9, 9, 9, 9, 0.1, 0.2, 0.3, 0.9],   # target 7: best -> rank 1
], np.float32)
TARGETS = np.array([6, 4, 7])
RANKS = [2, 3, 1]


def test_numpy_full_ranks_by_hand():
    np.testing.assert_array_equal(m.np_full_ranks(SCORES, TARGETS, num_reserved=4), RANKS)
    assert m.np_hit_rate(RANKS, 1) == pytest.approx(1 / 3)
    assert m.np_hit_rate(RANKS, 2) == pytest.approx(2 / 3)
    assert m.np_ndcg(RANKS, 2) == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert m.np_mrr(RANKS, 3) == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    assert m.np_mrr(RANKS, 2) == pytest.approx((1 / 2 + 1) / 3)


@pytest.mark.parametrize("kind,k,expected", [
    ("hr", 1, 1 / 3), ("hr", 2, 2 / 3), ("hr", 3, 1.0),
    ("ndcg", 2, (1 / math.log2(3) + 1) / 3), ("ndcg", 3, (1 / math.log2(3) + 1 / 2 + 1) / 3),
    ("mrr", 3, (1 / 2 + 1 / 3 + 1) / 3), ("mrr", 1, 1 / 3),
])
def test_keras_full_ranking_metrics_by_hand(kind, k, expected):
    metric = m.RankingMetric(kind, k, num_reserved=4)
    metric.update_state(TARGETS[:2], SCORES[:2])
    metric.update_state(TARGETS[2:], SCORES[2:])
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_padded_target_lists_skip_padding():
    # Two users; user 0 has targets 6 and 5 (ranks 2 and 1), user 1 has 4 and padding.
    targets = np.array([[6, 5], [4, 0]])
    metric = m.MRR(3, num_reserved=4)
    metric.update_state(targets, SCORES[:2])
    assert float(metric.result()) == pytest.approx((1 / 2 + 1 + 1 / 3) / 3)


def test_sampled_ranks_extremes_and_expectation():
    vocab, n = 504, 4000
    rng = np.random.default_rng(0)
    logits = np.tile(np.arange(vocab, dtype=np.float32), (n, 1))
    best = np.full(n, vocab - 1)
    worst = np.full(n, 4)
    ranks_best = m.sampled_ranks(tf.constant(logits), tf.constant(best), 100, 4, seed=1).numpy()
    ranks_worst = m.sampled_ranks(tf.constant(logits), tf.constant(worst), 100, 4, seed=1).numpy()
    np.testing.assert_array_equal(ranks_best, 1)
    np.testing.assert_array_equal(ranks_worst, 100)     # negatives never include the target itself
    # Target in the middle: 249.5 of the 499 other real ids score higher on average.
    middle = rng.integers(4, vocab, size=n)
    ranks = m.sampled_ranks(tf.constant(logits), tf.constant(middle), 100, 4, seed=2).numpy()
    expected = 1 + 99 * (vocab - 1 - middle) / (vocab - 4 - 1)
    assert abs(ranks.mean() - expected.mean()) < 1.0


def test_numpy_sampled_ranks_and_negatives():
    rng = np.random.default_rng(0)
    negatives = m.np_sample_negatives(rng, TARGETS, vocab_size=8, num_negatives=50, num_reserved=4)
    assert negatives.shape == (3, 50)
    assert (negatives >= 4).all() and (negatives < 8).all()
    assert not (negatives == TARGETS[:, None]).any()
    fixed = np.array([[5, 4], [7, 5], [4, 5]])   # row 1: 0.9 above, a 0.4 tie -> rank 3
    np.testing.assert_array_equal(m.np_sampled_ranks(SCORES, TARGETS, fixed), [2, 3, 1])


def test_sampled_keras_metric_is_reproducible_with_a_seed():
    logits = np.random.default_rng(3).normal(size=(64, 300)).astype(np.float32)
    targets = np.random.default_rng(4).integers(4, 300, size=64)
    values = []
    for _ in range(2):
        metric = m.HitRate(10, num_reserved=4, num_candidates=100, seed=7)
        metric.update_state(targets, logits)
        values.append(float(metric.result()))
    assert values[0] == values[1]
    assert 0.0 < values[0] < 0.5
    assert metric.name == "sampled_hr@10"


def test_accuracy_and_macro_f1_by_hand():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    # class 0: P=1/2 R=1/2 F1=.5; class 1: P=2/3 R=1 F1=.8; class 2: F1=0; class 3 absent.
    assert m.np_accuracy(y_true, y_pred) == pytest.approx(0.6)
    assert m.np_macro_f1(y_true, y_pred) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    logits = np.eye(4, dtype=np.float32)[y_pred]
    metric = m.MacroF1(4)
    metric.update_state(np.array(y_true[:3]), logits[:3])
    metric.update_state(np.array(y_true[3:]), logits[3:])
    assert float(metric.result()) == pytest.approx((0.5 + 0.8 + 0.0) / 3, abs=1e-6)


def test_ranking_metric_rejects_unknown_kind():
    with pytest.raises(ValueError, match="ranking metric kind"):
        m.RankingMetric("auc", 10)


def test_macro_f1_agrees_with_scikit_learn():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    labels, predictions = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    assert m.np_macro_f1(labels, predictions) == pytest.approx(f1_score(labels, predictions, average="macro"))


def test_numpy_ranks_agree_with_the_tensorflow_ranks_under_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=(30, 12)).astype(np.float32)  # many ties
    targets = rng.integers(4, 12, size=30)
    np.testing.assert_array_equal(m.np_full_ranks(scores, targets, 4),
                                  m.full_ranks(tf.constant(scores), tf.constant(targets), 4).numpy())


def test_ranking_values_by_hand():
    ranks = np.array([1, 3, 11])
    np.testing.assert_allclose(m.np_ranking_values(ranks, "hr", 10), [1, 1, 0])
    np.testing.assert_allclose(m.np_ranking_values(ranks, "ndcg", 10), [1, 0.5, 0])
    np.testing.assert_allclose(m.np_ranking_values(ranks, "mrr", 5), [1, 1 / 3, 0])
    with pytest.raises(ValueError, match="ranking kind"):
        m.np_ranking_values(ranks, "auc", 5)
