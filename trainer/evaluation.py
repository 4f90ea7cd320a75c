"""Evaluation of a fine-tuned task against a baseline, and the blessing decision.

What the pipeline's ``TaskEvaluator`` computes, kept here beside the training code so that
the same maths serves any caller:

- classification: accuracy and macro-F1 of the task model on a split, and of the majority
  class of the training split (the baseline);
- cold start: HR/NDCG/MRR@K with full ranking (every (user, target item) pair of the split is
  ranked among all real target items), for the task model and for target-item popularity in
  the training split (the baseline);
- ``decide_blessing``: whether a metric value beats its baseline by ``min_lift`` and reaches
  ``min_value``, with the reason in words.

The metric functions are those of ``peterrec.trainer.metrics`` (its numpy reference
functions). Importing this module does not load TensorFlow.
"""

import re
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
# A cold-start metric name: ``hr@10``, ``ndcg@5``, ``mrr@20``.
RANKING_METRIC = re.compile(r"^(hr|ndcg|mrr)@([1-9][0-9]*)$")
# Reported for every cold-start evaluation besides the thresholded metric.
DEFAULT_RANKING_METRICS = ("hr@10", "ndcg@10", "mrr@5")


class EvaluationError(RuntimeError):
    """An evaluation could not be carried out (empty training split, nothing to evaluate, ...)."""


def parse_ranking_metric(name: str) -> Tuple[str, int]:
    """``("hr", 10)`` for ``"hr@10"``; ValueError for anything that is not ``hr|ndcg|mrr@K``."""
    match = RANKING_METRIC.match(name) if isinstance(name, str) else None
    if not match:
        raise ValueError(f"{name!r} is not a ranking metric; use hr@K, ndcg@K or mrr@K (e.g. hr@10)")
    return match.group(1), int(match.group(2))


def classification_values(labels, predictions) -> Dict[str, float]:
    """Accuracy and macro-F1 of predicted class ids against the labels."""
    from peterrec.trainer import metrics

    return {"accuracy": metrics.np_accuracy(labels, predictions),
            "macro_f1": metrics.np_macro_f1(labels, predictions)}


def ranking_values(ranks, metric_names: Iterable[str]) -> Dict[str, float]:
    """``{name: mean value}`` of each ranking metric (``hr@10``, ...) over the given ranks."""
    from peterrec.trainer import metrics

    values = {}
    for name in metric_names:
        kind, k = parse_ranking_metric(name)
        values[name] = float(np.mean(metrics.np_ranking_values(ranks, kind, k)))
    return values


def _predict(task_model) -> Callable[[Any], np.ndarray]:
    """The task model's scores [B, C] of a batch's ``item_ids``, as numpy."""
    return lambda batch: np.asarray(task_model({"item_ids": batch["item_ids"]}, training=False))


def _batches(examples_uri: str, split: str, batch_size: int, max_len: int, kind: str):
    from peterrec.trainer import data

    return data.sequence_dataset(examples_uri, split, batch_size, max_len, kind=kind)


def evaluate_classification(task_model, examples_uri: str, split: str, max_len: int, batch_size: int,
                            num_classes: int) -> Dict[str, Any]:
    """Accuracy and macro-F1 of the task and of the majority class of the training split.

    Returns ``{"model": {...}, "baseline": {...}, "examples": N, "majority_class_id": c}``.
    """
    train = list(_batches(examples_uri, "train", batch_size, max_len, "classification"))
    train_labels = np.concatenate([np.asarray(b["label"]) for b in train]) if train else np.zeros(0, np.int64)
    if train_labels.size == 0:
        raise EvaluationError("the training split has no examples: no majority class to compare with")
    majority = int(np.bincount(train_labels, minlength=num_classes).argmax())
    predict = _predict(task_model)
    labels, predictions = [], []
    for batch in _batches(examples_uri, split, batch_size, max_len, "classification"):
        predictions.append(np.argmax(predict(batch), axis=-1))
        labels.append(np.asarray(batch["label"]))
    if not labels:
        raise EvaluationError(f"split {split!r} has no examples to evaluate")
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    return {
        "model": classification_values(labels, predictions),
        "baseline": classification_values(labels, np.full_like(labels, majority)),
        "examples": int(labels.size),
        "majority_class_id": majority,
    }


def evaluate_cold_start(task_model, examples_uri: str, split: str, max_len: int, batch_size: int,
                        metric_names: Sequence[str]) -> Dict[str, Any]:
    """Full-ranking metrics of the task and of target-item popularity in the training split.

    Every (user, target item) pair of the split is ranked among all real target items. The
    metrics are ``metric_names`` plus ``DEFAULT_RANKING_METRICS``. Returns
    ``{"model": {...}, "baseline": {...}, "examples": number of pairs}``.
    """
    from peterrec.trainer import metrics

    num_reserved = int(getattr(task_model.head, "num_reserved", 1))
    num_outputs = int(task_model.config.num_outputs)
    counts = np.zeros(num_outputs, np.float64)
    for batch in _batches(examples_uri, "train", batch_size, max_len, "cold_start"):
        targets = np.asarray(batch["target_item_ids"]).ravel()
        counts += np.bincount(targets[targets >= num_reserved], minlength=num_outputs)[:num_outputs]
    predict = _predict(task_model)
    model_ranks, popularity_ranks = [], []
    for batch in _batches(examples_uri, split, batch_size, max_len, "cold_start"):
        targets = np.asarray(batch["target_item_ids"])
        rows, columns = np.nonzero(targets >= num_reserved)
        if rows.size == 0:
            continue
        logits = predict(batch)
        flat_targets = targets[rows, columns]
        model_ranks.append(metrics.np_full_ranks(logits[rows], flat_targets, num_reserved))
        popularity_ranks.append(metrics.np_full_ranks(np.tile(counts, (rows.size, 1)), flat_targets, num_reserved))
    if not model_ranks:
        raise EvaluationError(f"split {split!r} has no target items to evaluate")
    model_ranks, popularity_ranks = np.concatenate(model_ranks), np.concatenate(popularity_ranks)
    names = sorted(set(metric_names) | set(DEFAULT_RANKING_METRICS))
    return {
        "model": ranking_values(model_ranks, names),
        "baseline": ranking_values(popularity_ranks, names),
        "examples": int(model_ranks.size),
    }


def decide_blessing(value: float, baseline_value: Optional[float], threshold) -> Tuple[bool, str]:
    """``(blessed, reason)`` of a metric value against a threshold.

    ``threshold`` has ``metric``, ``baseline`` (``"none"`` for no baseline), ``min_lift`` and
    ``min_value`` (None for no floor), as ``peterrec.pipeline.config.ThresholdConfig``.
    Blessed when the value is strictly above ``baseline_value + min_lift`` (when there is a
    baseline) and at least ``min_value`` (when there is a floor).
    """
    reasons = []
    blessed = True
    if threshold.baseline != "none" and baseline_value is not None:
        needed = baseline_value + threshold.min_lift
        verdict = "beats" if value > needed else "does not beat"
        blessed = value > needed
        reasons.append(f"{threshold.metric} {value:.4f} {verdict} the {threshold.baseline} baseline "
                       f"{baseline_value:.4f} + min_lift {threshold.min_lift:g}")
    if threshold.min_value is not None:
        if value < threshold.min_value:
            blessed = False
            reasons.append(f"{threshold.metric} {value:.4f} is below min_value {threshold.min_value:g}")
        else:
            reasons.append(f"{threshold.metric} {value:.4f} reaches min_value {threshold.min_value:g}")
    return blessed, "; ".join(reasons)
