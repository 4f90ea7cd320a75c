"""The cold-start head's in-batch softmax (TFRS ``tasks.Retrieval``), the project's sampled
cold-start training: the loss against a hand computation, padding targets skipped, accidental
hits removed, the log-Q correction applied, and a fine-tune with ``softmax="sampled"`` that
uses it and learns on tiny data."""

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
            q = probability[candidate]   # any constant factor leaves the softmax unchanged
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


def test_the_sampled_cold_start_loss_is_the_in_batch_one():
    head, users = _head_and_users()
    targets = tf.constant([[4, 2], [1, 0], [5, 3]])
    in_batch = float(head.in_batch_loss(users, targets, COUNTS))
    assert float(head.sampled_loss(users, targets, COUNTS)) == pytest.approx(in_batch)
    # The former unigram-sampled softmax, kept as the benchmark's baseline, is another loss.
    assert abs(float(head.unigram_loss(users, targets, 2, COUNTS, seed=1)) - in_batch) > 1e-3


def _tiny_cold_start(num_users=64, seed=0):
    """Users of two groups: group g reads items of parity g and has targets 1-5 (g=0) or 6-10
    (g=1) as in ``tiny_examples``; left-padded item ids [N, 8] and padded targets [N, 3]."""
    rng = np.random.default_rng(seed)
    items = np.zeros([num_users, 8], np.int32)
    targets = np.zeros([num_users, 3], np.int32)
    for user in range(num_users):
        group = user % 2
        length = int(rng.integers(3, 9))
        items[user, 8 - length:] = 4 + group + 2 * rng.integers(0, 15, size=length)
        chosen = rng.choice(5, size=int(rng.integers(1, 4)), replace=False)
        targets[user, : len(chosen)] = 1 + 5 * group + chosen
    return items, targets


def test_in_batch_loss_trains_inside_an_unconverted_graph():
    """Our train steps run without AutoGraph (``_no_autograph``), where TFRS's Retrieval.call
    alone fails (``len`` of a shape tensor); the loss must trace and learn there."""
    keras.utils.set_random_seed(0)
    items, targets = _tiny_cold_start()
    embedding, head = keras.layers.Embedding(40, 8), ColdStartHead(11)
    head(tf.reduce_mean(embedding(tf.constant(items[:2])), 1))
    variables = embedding.trainable_weights + head.trainable_weights
    optimizer = keras.optimizers.Adam(0.05)

    @tf.function(autograph=False)
    def step(batch_items, batch_targets):
        with tf.GradientTape() as tape:
            loss = head.in_batch_loss(tf.reduce_mean(embedding(batch_items), 1), batch_targets)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = [float(step(tf.constant(items), tf.constant(targets))) for _ in range(40)]
    # From ~log(127 candidates) towards ~log(52): a pair's ~50 candidates from its own group
    # (other targets of similar users) cannot be told from its positive.
    assert losses[-1] < losses[0] - 0.6
    # What it learnt ranks: each group's targets above the other group's.
    scores = head(tf.reduce_mean(embedding(tf.constant(items)), 1)).numpy()
    own = np.where(np.arange(len(items))[:, None] % 2 == 0, scores[:, 1:6].mean(1, keepdims=True),
                   scores[:, 6:11].mean(1, keepdims=True))
    other = np.where(np.arange(len(items))[:, None] % 2 == 0, scores[:, 6:11].mean(1, keepdims=True),
                     scores[:, 1:6].mean(1, keepdims=True))
    assert (own > other).mean() > 0.9


def test_task_model_fine_tunes_with_the_in_batch_softmax():
    """A cold-start TaskModel with softmax="sampled" trains with ``in_batch_loss`` and learns."""
    from peterrec.serving import random_artifacts
    from peterrec.trainer.config import AdapterConfig, TaskConfig
    from peterrec.trainer.task_model import build_task_model

    keras.utils.set_random_seed(0)
    backbone = random_artifacts.build_backbone(random_artifacts.item_vocabulary(36), embedding_dim=8)
    config = TaskConfig(name="cold", kind="cold_start", strategy="peterrec-serial", num_outputs=11,
                        softmax="sampled", adapter=AdapterConfig(bottleneck=4))
    counts = [0.0] + [1.0] * 10
    model = build_task_model(backbone, config, target_counts=counts)
    items, targets = _tiny_cold_start()
    batch = {"item_ids": tf.constant(items), "target_item_ids": tf.constant(targets)}
    loss, logits = model.compute_task_loss(batch, training=True)
    expected = model.head.in_batch_loss(model.user_vector(batch, training=True), batch["target_item_ids"], counts)
    assert logits is None and float(loss) == pytest.approx(float(expected), rel=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(0.02))
    data = tf.data.Dataset.from_tensor_slices(batch).batch(16)
    history = model.fit(data, epochs=8, verbose=0).history["loss"]
    # From ~log(31 candidates) towards ~log(12) (the same-group floor, as above).
    assert history[-1] < history[0] - 0.25
