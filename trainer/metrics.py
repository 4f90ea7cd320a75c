"""Ranking and classification metrics: Keras metric classes plus numpy reference functions.

Ranking (docs/method.md section 4): the rank of the true item among the candidates is
``1 + #(candidates scoring above it) + #(other candidates scoring exactly as it)`` (ties count
against the model, so a constant scorer does not look perfect). Then

- ``HR@K  = [rank <= K]``
- ``NDCG@K = [rank <= K] / log2(rank + 1)``
- ``MRR@K = [rank <= K] / rank``

Full ranking (the honest default) ranks the target among ALL real item ids (reserved ids, i.e.
ids below ``num_reserved``, are never candidates). Sampled ranking (the paper's protocol) ranks
it among ``num_candidates - 1`` negatives drawn uniformly from the real ids other than the
target (with replacement), 100 candidates in all. Targets below ``num_reserved`` (padding) are
skipped, so [B, Tt] padded target lists work as they are.
"""

from typing import Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids

RANKING_KINDS = ("hr", "ndcg", "mrr")


# ----------------------------------------------------------------------------- numpy reference
def np_full_ranks(scores: np.ndarray, targets: np.ndarray, num_reserved: int = ids.NUM_RESERVED) -> np.ndarray:
    """Ranks of ``targets`` [N] among all real ids of ``scores`` [N, V] (1 = best): the number of
    real ids scoring at least as high as the target (ties count against the scorer)."""
    scores = np.asarray(scores, np.float64)
    targets = np.asarray(targets, np.int64)
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    return np.sum(scores[:, num_reserved:] >= target_scores, axis=1).astype(np.int64)


def np_sampled_ranks(scores: np.ndarray, targets: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """Ranks of ``targets`` [N] among themselves and ``negatives`` [N, M] (ids) of ``scores``."""
    scores = np.asarray(scores, np.float64)
    targets = np.asarray(targets, np.int64)
    target_scores = scores[np.arange(len(targets)), targets][:, None]
    negative_scores = np.take_along_axis(scores, np.asarray(negatives, np.int64), axis=1)
    return 1 + np.sum(negative_scores >= target_scores, axis=1).astype(np.int64)


def np_sample_negatives(rng: np.random.Generator, targets: np.ndarray, vocab_size: int, num_negatives: int = 99,
                        num_reserved: int = ids.NUM_RESERVED) -> np.ndarray:
    """[N, num_negatives] ids drawn uniformly (with replacement) from the real ids other than each target."""
    targets = np.asarray(targets, np.int64)
    draws = rng.integers(num_reserved, vocab_size - 1, size=(len(targets), num_negatives))
    return draws + (draws >= targets[:, None])


def np_ranking_values(ranks: np.ndarray, kind: str, k: int) -> np.ndarray:
    """Per-query HR@k / NDCG@k / MRR@k (``kind`` in RANKING_KINDS) of the given ranks."""
    ranks = np.asarray(ranks, np.float64)
    inside = ranks <= k
    if kind == "hr":
        return inside.astype(np.float64)
    if kind == "ndcg":
        return np.where(inside, 1.0 / np.log2(ranks + 1.0), 0.0)
    if kind == "mrr":
        return np.where(inside, 1.0 / ranks, 0.0)
    raise ValueError(f"ranking kind must be one of {RANKING_KINDS}, got {kind!r}")


def np_hit_rate(ranks: np.ndarray, k: int) -> float:
    """Mean HR@k of the given ranks."""
    return float(np.mean(np_ranking_values(ranks, "hr", k)))


def np_ndcg(ranks: np.ndarray, k: int) -> float:
    """Mean NDCG@k (one relevant item) of the given ranks."""
    return float(np.mean(np_ranking_values(ranks, "ndcg", k)))


def np_mrr(ranks: np.ndarray, k: int) -> float:
    """Mean MRR@k of the given ranks."""
    return float(np.mean(np_ranking_values(ranks, "mrr", k)))


def np_accuracy(y_true, y_pred) -> float:
    """Fraction of exact matches."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def np_macro_f1(y_true, y_pred) -> float:
    """Unweighted mean F1 over the classes that occur in y_true or y_pred (as scikit-learn)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in np.union1d(y_true, y_pred):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        scores.append(0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn))
    return float(np.mean(scores))


# ----------------------------------------------------------------------------- TensorFlow ranks
def full_ranks(logits, targets, num_reserved: int = ids.NUM_RESERVED):
    """Ranks (float, 1 = best) of ``targets`` [...] among all real ids of ``logits`` [..., V]."""
    targets = tf.cast(targets, tf.int32)
    target_scores = tf.gather(logits, targets, batch_dims=targets.shape.rank)[..., tf.newaxis]
    real = logits[..., num_reserved:]
    better_or_tied = tf.reduce_sum(tf.cast(real >= target_scores, tf.float32), axis=-1)
    # The target itself is among the real ids and ties with itself.
    return better_or_tied


def sampled_ranks(logits, targets, num_candidates: int = 100, num_reserved: int = ids.NUM_RESERVED,
                  seed: Optional[int] = None, generator: Optional[tf.random.Generator] = None):
    """Ranks of ``targets`` among themselves and ``num_candidates - 1`` uniform negatives."""
    targets = tf.cast(targets, tf.int32)
    vocab = tf.shape(logits)[-1]
    shape = tf.concat([tf.shape(targets), [num_candidates - 1]], axis=0)
    if generator is not None:
        draws = generator.uniform(shape, minval=num_reserved, maxval=vocab - 1, dtype=tf.int32)
    else:
        draws = tf.random.uniform(shape, minval=num_reserved, maxval=vocab - 1, dtype=tf.int32, seed=seed)
    negatives = draws + tf.cast(draws >= targets[..., tf.newaxis], tf.int32)
    batch_dims = targets.shape.rank
    target_scores = tf.gather(logits, targets, batch_dims=batch_dims)[..., tf.newaxis]
    negative_scores = tf.gather(logits, negatives, batch_dims=batch_dims)
    return 1.0 + tf.reduce_sum(tf.cast(negative_scores >= target_scores, tf.float32), axis=-1)


def rank_metric_values(ranks, kind: str, k: int):
    """Per-example HR/NDCG/MRR@k from float ranks."""
    inside = tf.cast(ranks <= float(k), tf.float32)
    if kind == "hr":
        return inside
    if kind == "ndcg":
        return inside * tf.math.log(2.0) / tf.math.log(ranks + 1.0)
    if kind == "mrr":
        return inside / ranks
    raise ValueError(f"ranking metric kind must be one of {RANKING_KINDS}, got {kind!r}")


# ----------------------------------------------------------------------------- Keras metrics
class RankingMetric(keras.metrics.Metric):
    """Mean HR@K / NDCG@K / MRR@K over (user, target) pairs; ``update_state(y_true, y_pred)``.

    y_true: target ids [B] or [B, Tt] (entries below ``num_reserved`` are padding, skipped);
    y_pred: scores over all ids [B, V]. ``num_candidates=None`` ranks against all real ids;
    an int (the paper: 100) ranks against that many candidates (target + uniform negatives).
    """

    def __init__(self, kind: str = "hr", k: int = 10, num_reserved: int = ids.NUM_RESERVED,
                 num_candidates: Optional[int] = None, seed: Optional[int] = None, name: Optional[str] = None,
                 **kwargs):
        if kind not in RANKING_KINDS:
            raise ValueError(f"ranking metric kind must be one of {RANKING_KINDS}, got {kind!r}")
        prefix = "sampled_" if num_candidates else ""
        super().__init__(name=name or f"{prefix}{kind}@{k}", **kwargs)
        self.kind, self.k, self.num_reserved = kind, int(k), int(num_reserved)
        self.num_candidates = int(num_candidates) if num_candidates else None
        self.seed = seed
        self.total = self.add_weight(name="total", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")
        self._generator = (tf.random.Generator.from_seed(seed) if (self.num_candidates and seed is not None)
                           else None)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.cast(y_true, tf.int32)
        y_pred = tf.convert_to_tensor(y_pred)
        if y_true.shape.rank == 2 and y_pred.shape.rank == 2:
            # Several targets per user: score each against the user's row.
            tt = tf.shape(y_true)[1]
            y_pred = tf.repeat(y_pred, tt, axis=0)
            if sample_weight is not None:
                sample_weight = tf.repeat(tf.reshape(tf.cast(sample_weight, tf.float32), [-1]), tt)
            y_true = tf.reshape(y_true, [-1])
        y_true = tf.reshape(y_true, [-1])
        valid = tf.cast(y_true >= self.num_reserved, tf.float32)
        safe_targets = tf.where(y_true >= self.num_reserved, y_true, self.num_reserved)
        if self.num_candidates:
            ranks = sampled_ranks(y_pred, safe_targets, self.num_candidates, self.num_reserved,
                                  generator=self._generator)
        else:
            ranks = full_ranks(y_pred, safe_targets, self.num_reserved)
        weights = valid if sample_weight is None else valid * tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        values = rank_metric_values(ranks, self.kind, self.k)
        self.total.assign_add(tf.reduce_sum(values * weights))
        self.count.assign_add(tf.reduce_sum(weights))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        config = super().get_config()
        config.update(kind=self.kind, k=self.k, num_reserved=self.num_reserved,
                      num_candidates=self.num_candidates, seed=self.seed)
        return config


class HitRate(RankingMetric):
    """HR@K (full ranking unless ``num_candidates`` is set)."""

    def __init__(self, k: int = 10, **kwargs):
        super().__init__("hr", k, **kwargs)


class NDCG(RankingMetric):
    """NDCG@K (full ranking unless ``num_candidates`` is set)."""

    def __init__(self, k: int = 10, **kwargs):
        super().__init__("ndcg", k, **kwargs)


class MRR(RankingMetric):
    """MRR@K (full ranking unless ``num_candidates`` is set)."""

    def __init__(self, k: int = 5, **kwargs):
        super().__init__("mrr", k, **kwargs)


class MacroF1(keras.metrics.Metric):
    """Macro-averaged F1 over the classes seen in labels or predictions (as scikit-learn).

    ``update_state(labels [B], logits [B, C])``; the prediction is the arg-max class.
    """

    def __init__(self, num_classes: int, name: str = "macro_f1", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.confusion = self.add_weight(name="confusion", shape=(self.num_classes, self.num_classes),
                                         initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        predictions = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        weights = None if sample_weight is None else tf.reshape(tf.cast(sample_weight, tf.float32), [-1])
        self.confusion.assign_add(tf.math.confusion_matrix(labels, predictions, self.num_classes,
                                                           weights=weights, dtype=tf.float32))

    def result(self):
        tp = tf.linalg.diag_part(self.confusion)
        predicted = tf.reduce_sum(self.confusion, axis=0)
        actual = tf.reduce_sum(self.confusion, axis=1)
        f1 = tf.math.divide_no_nan(2.0 * tp, predicted + actual)
        present = tf.cast((predicted + actual) > 0, tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(f1 * present), tf.reduce_sum(present))

    def reset_state(self):
        self.confusion.assign(tf.zeros_like(self.confusion))

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes)
        return config


def classification_metrics(num_classes: int):
    """Accuracy (full softmax arg-max) and macro-F1."""
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), MacroF1(num_classes)]


def ranking_metrics(num_reserved: int, sampled_candidates: int = 100, seed: Optional[int] = 0):
    """HR@10, NDCG@10, MRR@5 with full ranking, and the same with sampled candidates."""
    full = [HitRate(10, num_reserved=num_reserved), NDCG(10, num_reserved=num_reserved),
            MRR(5, num_reserved=num_reserved)]
    sampled = [HitRate(10, num_reserved=num_reserved, num_candidates=sampled_candidates, seed=seed),
               NDCG(10, num_reserved=num_reserved, num_candidates=sampled_candidates, seed=seed),
               MRR(5, num_reserved=num_reserved, num_candidates=sampled_candidates, seed=seed)]
    return full + sampled
