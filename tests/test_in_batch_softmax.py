"""The cold-start head's in-batch softmax (TFRS ``tasks.Retrieval``): the loss against a hand
computation, padding targets skipped, accidental hits removed, the log-Q correction applied,
and a fine-tune with ``softmax="in_batch"`` that learns on tiny data."""

import dataclasses

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from peterrec.trainer.heads import ColdStartHead

COUNTS = [0.0, 5.0, 1.0, 2.0, 8.0, 4.0]   # id 0 is the padding id


def _head_and_users():
    keras.utils.set_random_seed(0)
    head = ColdStartHead(len(COUNTS), num_reserved=1)
    users = tf.random.normal([3, 4])
    head(users)
    # Non-zero biases, so a loss that dropped them would differ.
    head.item_bias.assign(tf.constant([0.0, 0.3, -0.2, 0.1, 0.5, -0.4]))
    return head, users


def _hand_loss(head, users, target_ids, counts=COUNTS, log_q=True):
    """In-batch softmax by hand: one row per non-padding (user, target) pair, candidates = the
    pairs' targets, logit u.e + b - log q, other pairs with the row's target id masked out."""
    table, bias = head.item_embeddings.numpy(), head.item_bias.numpy()
    u = users.numpy()
    pairs = [(row, t) for row, targets in enumerate(target_ids) for t in targets if t != 0]
    probability = np.asarray(counts, np.float64) / np.sum(counts)
    losses = []
    for i, (row, target) in enumerate(pairs):
        logits = []
        for j, (_, candidate) in enumerate(pairs):
            if j != i and candidate == target:
                continue  # an accidental hit
            q = 1.0 - (1.0 - probability[candidate]) ** len(pairs)
            logits.append(u[row] @ table[candidate] + bias[candidate] - (np.log(q) if log_q else 0.0))
            if j == i:
                positive = len(logits) - 1
        logits = np.asarray(logits)
        losses.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[positive])
    return float(np.mean(losses))


def test_in_batch_loss_equals_the_hand_computed_softmax():
    head, users = _head_and_users()
    # Target 4 twice (rows 0 and 2): each is an accidental hit of the other; 0s are padding.
    target_ids = [[4, 2, 0], [1, 0, 0], [4, 5, 3]]
    got = float(head.in_batch_loss(users, tf.constant(target_ids), COUNTS))
    assert got == pytest.approx(_hand_loss(head, users, target_ids), rel=1e-4)
    # The checks can fail: without the log-Q correction the value differs.
    assert abs(got - _hand_loss(head, users, target_ids, log_q=False)) > 1e-3


def test_in_batch_loss_skips_padding_and_removes_accidental_hits():
    head, users = _head_and_users()
    padded = float(head.in_batch_loss(users, tf.constant([[4, 0], [1, 0], [5, 0]]), COUNTS))
    single = float(head.in_batch_loss(users, tf.constant([4, 1, 5]), COUNTS))
    assert padded == pytest.approx(single, rel=1e-6)
    # Only padding: no pairs, a zero loss rather than NaN.
    assert float(head.in_batch_loss(users, tf.zeros([3, 2], tf.int32), COUNTS)) == 0.0
    # Every pair has the same target: all negatives are accidental hits, so each row's softmax
    # holds its positive alone and the loss is 0 (kept as negatives it would be log 3).
    same = float(head.in_batch_loss(users, tf.constant([3, 3, 3]), COUNTS))
    assert same == pytest.approx(0.0, abs=1e-5)


def test_training_loss_dispatches_by_softmax_kind():
    head, users = _head_and_users()
    targets = tf.constant([4, 1, 5])
    assert float(head.training_loss(users, targets, "in_batch", target_counts=COUNTS)) == pytest.approx(
        float(head.in_batch_loss(users, targets, COUNTS)))
    with pytest.raises(ValueError, match="in_batch"):
        head.training_loss(users, targets, "full")
