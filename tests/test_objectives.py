"""Pretraining objectives and task losses: padding masked out, cloze corruption, sampled softmax
with a correct log-Q correction, and the PretrainingModel fit/evaluate loop."""

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer.backbone import NextItNetBackbone
from peterrec.trainer.objectives import (ClozeObjective, NextItemObjective, PretrainingModel, classification_loss,
                                         cold_start_loss, frequency_unigrams, make_objective, sampled_softmax_loss)

VOCAB = 24


def _backbone(causal=True, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = NextItNetBackbone(vocab_size=VOCAB, embedding_dim=8, dilations=(1, 2, 4, 8), causal=causal)
    backbone.ensure_built()
    rng = np.random.default_rng(seed)
    backbone.set_weights([w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in backbone.get_weights()])
    return backbone


def _pad(rows, length):
    return np.array([[ids.PAD_ID] * (length - len(r)) + list(r) for r in rows], np.int32)


ROWS = [[5, 9, 11, 4, 20], [7, 8], [6, 6, 13, 21, 22, 23]]


def test_next_item_loss_is_unchanged_by_padding():
    backbone = _backbone()
    objective = NextItemObjective()
    short, _ = objective(backbone, _pad(ROWS, 6))
    long, _ = objective(backbone, _pad(ROWS, 15))
    assert float(short) == pytest.approx(float(long), abs=1e-5)


def test_next_item_loss_matches_a_masked_numpy_reference():
    backbone = _backbone()
    batch = _pad(ROWS, 8)
    loss, logits = NextItemObjective()(backbone, batch)
    logits = logits.numpy()
    assert logits.shape == (3, 7, VOCAB)
    total, count = 0.0, 0
    for b in range(3):
        for t in range(7):
            if batch[b, t] != ids.PAD_ID:       # input real (and so is the label)
                row = logits[b, t].astype(np.float64)
                row = row - row.max()
                total += -(row[batch[b, t + 1]] - np.log(np.exp(row).sum()))
                count += 1
    assert count == sum(len(r) - 1 for r in ROWS)
    assert float(loss) == pytest.approx(total / count, rel=1e-5)
    assert (logits[..., : ids.NUM_RESERVED] < -1e8).all()


def test_cloze_corruption_statistics():
    objective = ClozeObjective(mask_rate=0.3, seed=0)
    rng = np.random.default_rng(0)
    batch = _pad([list(rng.integers(4, VOCAB, size=rng.integers(5, 40))) for _ in range(400)], 40)
    inputs, labels, selected = [t.numpy() for t in objective.corrupt(batch, VOCAB)]
    real = batch != ids.PAD_ID
    assert not (selected & ~real).any()
    np.testing.assert_array_equal(inputs[~real], ids.PAD_ID)
    np.testing.assert_array_equal(labels, batch)
    np.testing.assert_array_equal(inputs[~selected], batch[~selected])
    assert selected[real].mean() == pytest.approx(0.3, abs=0.02)
    masked = (inputs == ids.MASK_ID)[selected].mean()
    kept = (inputs == batch)[selected].mean()
    assert masked == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1 + 0.1 / (VOCAB - 4), abs=0.03)   # random draws may hit the item


def test_cloze_loss_is_unchanged_by_padding():
    backbone = _backbone(causal=False)
    objective = ClozeObjective(seed=1)
    inputs, labels, selected = objective.corrupt(_pad(ROWS, 6), VOCAB)
    extra = [[0, 0, 0, 0, 0, 0, 0]] * 3
    pad = lambda t: tf.concat([tf.cast(tf.constant(extra), t.dtype), t], axis=1)  # noqa: E731
    short, _ = objective.loss_on_corrupted(backbone, inputs, labels, selected)
    long, _ = objective.loss_on_corrupted(backbone, pad(inputs), pad(labels), pad(selected))
    assert float(selected.numpy().sum()) > 0
    assert float(short) == pytest.approx(float(long), abs=1e-5)


def test_sampled_softmax_needs_counts_and_never_samples_reserved_ids():
    with pytest.raises(ValueError, match="item_counts"):
        NextItemObjective(softmax="sampled")
    unigrams = frequency_unigrams([5, 5, 5, 5, 10, 0, 3])
    assert unigrams[:4] == [0.0] * 4 and unigrams[5] == 1.5
    objective = NextItemObjective(softmax="sampled", item_counts=[0] * 4 + list(range(VOCAB - 4, 0, -1)))
    assert objective.num_sampled == round(0.2 * VOCAB)
    backbone = _backbone()
    loss, logits = objective(backbone, _pad(ROWS, 8))
    assert logits is None and np.isfinite(float(loss)) and float(loss) > 0
    sampled, _, _ = tf.random.fixed_unigram_candidate_sampler(
        tf.constant([[5]], tf.int64), 1, 15, True, VOCAB, unigrams=objective.unigrams)
    assert (sampled.numpy() >= ids.NUM_RESERVED).all()


def test_log_q_correction_recovers_the_item_distribution():
    """A bias-only model trained with the frequency-aware sampled softmax learns p(item) when the
    log-Q correction is applied, and a distorted distribution without it."""
    vocab, reserved = 30, 4
    p = np.zeros(vocab)
    p[reserved:] = 1.0 / np.arange(1, vocab - reserved + 1) ** 1.2
    p /= p.sum()
    counts = (p * 10000).round().tolist()
    rng = np.random.default_rng(0)
    labels = tf.constant(rng.choice(vocab, size=(200, 256), p=p))

    def learned_kl(corrected):
        bias = tf.Variable(tf.zeros([vocab]))
        weights = tf.zeros([vocab, 1])
        optimizer = keras.optimizers.Adam(0.05)

        @tf.function
        def step(batch):
            x = tf.zeros([tf.shape(batch)[0], 1])
            with tf.GradientTape() as tape:
                if corrected:
                    loss = sampled_softmax_loss(x, batch, weights, bias, counts, 8, seed=3)
                else:
                    true = tf.cast(tf.reshape(batch, [-1, 1]), tf.int64)
                    s = tf.random.fixed_unigram_candidate_sampler(true, 1, 8, True, vocab, unigrams=counts, seed=3)
                    loss = tf.reduce_mean(tf.nn.sampled_softmax_loss(
                        weights, bias, true, x, 8, vocab, sampled_values=(s[0], tf.ones_like(s[1]),
                                                                          tf.ones_like(s[2]))))
            optimizer.apply_gradients([(tape.gradient(loss, bias), bias)])

        for i in range(labels.shape[0]):
            step(labels[i])
        q = tf.nn.softmax(bias[reserved:]).numpy()
        return float(np.sum(p[reserved:] * np.log(p[reserved:] / q)))

    corrected, uncorrected = learned_kl(True), learned_kl(False)
    assert corrected < 0.03
    assert uncorrected > 5 * corrected


def test_task_losses_match_numpy():
    logits = np.array([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]], np.float32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(classification_loss(logits, [1, 0])) == pytest.approx(-(log_p[0, 1] + log_p[1, 0]) / 2, rel=1e-5)
    # cold start: id 0 is padding; user 0 has targets 1 and 2, user 1 has target 2.
    loss = cold_start_loss(logits, np.array([[1, 2], [2, 0]]))
    assert float(loss) == pytest.approx(-(log_p[0, 1] + log_p[0, 2] + log_p[1, 2]) / 3, rel=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_pretraining_model_learns_and_reports_ranking_metrics(causal):
    backbone = _backbone(causal)
    objective = make_objective(backbone, seed=0)
    assert isinstance(objective, NextItemObjective if causal else ClozeObjective)
    model = PretrainingModel(backbone, objective)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    # A deterministic cycle 4 -> 5 -> ... -> 23 -> 4: easy to learn.
    rng = np.random.default_rng(0)
    starts = rng.integers(0, VOCAB - 4, size=64)
    rows = [[4 + (s + t) % (VOCAB - 4) for t in range(int(n))] for s, n in zip(starts, rng.integers(3, 12, 64))]
    data = tf.data.Dataset.from_tensor_slices({"item_ids": _pad(rows, 12)}).batch(32)
    before = model.evaluate(data, verbose=0, return_dict=True)
    model.fit(data.repeat(), steps_per_epoch=60, epochs=1, verbose=0)
    after = model.evaluate(data, verbose=0, return_dict=True)
    assert set(after) == {"loss", "hr@10", "ndcg@10"}
    assert after["loss"] < before["loss"]
    assert after["hr@10"] > before["hr@10"] and after["hr@10"] > 0.8


def test_pretraining_loss_is_the_mean_over_counted_positions_not_over_batches():
    """Batches of unequal counted positions (5 vs 1 here): each weighs its count in the loss."""
    backbone = _backbone()
    objective = NextItemObjective()
    rows = [[5, 9, 11], [7, 8, 12, 13, 14], [6, 7]]
    padded = _pad(rows, 6)
    exact, _, count = objective.loss_and_count(backbone, padded)
    assert float(count) == sum(len(r) - 1 for r in rows)
    per_batch = [float(objective(backbone, padded[:2])[0]), float(objective(backbone, padded[2:])[0])]
    assert abs(np.mean(per_batch) - float(exact)) > 1e-3
    model = PretrainingModel(backbone, objective)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    batches = tf.data.Dataset.from_tensor_slices({"item_ids": padded}).batch(2)
    assert model.evaluate(batches, verbose=0, return_dict=True)["loss"] == pytest.approx(float(exact), rel=1e-5)
    assert model.fit(batches, epochs=1, verbose=0).history["loss"][0] == pytest.approx(float(exact), rel=1e-5)


def test_cloze_count_is_the_number_of_selected_positions():
    backbone = _backbone(causal=False)
    objective = ClozeObjective(seed=0)
    loss, _, count = objective.loss_and_count(backbone, _pad(ROWS, 8))
    real = sum(len(r) for r in ROWS)
    assert 0 < float(count) <= real and np.isfinite(float(loss))
