"""Heads (classification, cold start) and the user read-outs (tcl, mean, tcl+mean)."""

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from peterrec.trainer.heads import ClassificationHead, ColdStartHead
from peterrec.trainer.readout import UserReadout


def test_classification_head_scores_all_classes():
    keras.utils.set_random_seed(0)
    head = ClassificationHead(5)
    u = tf.random.normal([3, 8])
    logits = head(u).numpy()
    kernel, bias = [w.numpy() for w in head.weights]
    np.testing.assert_allclose(logits, u.numpy() @ kernel + bias, atol=1e-5)
    deep = ClassificationHead(5, hidden_units=4)
    assert deep(u).shape == (3, 5) and len(deep.trainable_weights) == 4
    assert ClassificationHead.from_config(deep.get_config()).hidden_units == 4


def test_cold_start_head_scores_and_masks_padding():
    keras.utils.set_random_seed(0)
    head = ColdStartHead(6)
    u = tf.random.normal([2, 4])
    logits = head(u).numpy()
    table, bias = head.item_embeddings.numpy(), head.item_bias.numpy()
    np.testing.assert_allclose(logits[:, 1:], (u.numpy() @ table.T + bias)[:, 1:], atol=1e-5)
    assert (logits[:, 0] < -1e8).all()


def test_cold_start_head_with_a_projection():
    keras.utils.set_random_seed(0)
    head = ColdStartHead(6, embedding_dim=3)
    u = tf.random.normal([2, 4])
    logits = head(u).numpy()
    projection = head.projection.kernel.numpy()
    expected = (u.numpy() @ projection) @ head.item_embeddings.numpy().T + head.item_bias.numpy()
    np.testing.assert_allclose(logits[:, 1:], expected[:, 1:], atol=1e-5)
    assert head.count_params() == 4 * 3 + 6 * 3 + 6
    assert ColdStartHead.from_config(head.get_config()).embedding_dim == 3


def test_cold_start_unigram_loss_ignores_padding_targets():
    keras.utils.set_random_seed(0)
    head = ColdStartHead(50)
    u = tf.random.normal([3, 4])
    head(u)
    with_padding = head.unigram_loss(u, tf.constant([[5, 0], [7, 9], [11, 0]]), num_sampled=10, seed=1)
    assert np.isfinite(float(with_padding)) and float(with_padding) > 0
    # Unsampled check of the padding rule: only padding -> zero pairs -> zero loss, not NaN.
    assert float(head.unigram_loss(u, tf.zeros([3, 2], tf.int32), num_sampled=10)) == 0.0


def _hidden_and_mask():
    hidden = tf.constant(np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3))
    item_mask = tf.constant([[False, True, True], [True, True, True]])   # the 4th position is [TCL]
    return hidden, item_mask


def test_tcl_readout_reads_the_appended_last_position():
    readout = UserReadout("tcl", 3)
    emb = tf.ones([2, 3, 3])
    mask = tf.constant([[False, True, True], [True, True, True]])
    appended, full_mask = readout.append_token(emb, mask)
    assert appended.shape == (2, 4, 3)
    np.testing.assert_array_equal(appended[:, -1].numpy(), np.tile(readout.tcl_embedding.numpy(), (2, 1)))
    np.testing.assert_array_equal(full_mask.numpy()[:, -1], True)
    hidden, item_mask = _hidden_and_mask()
    np.testing.assert_array_equal(readout(hidden, item_mask).numpy(), hidden.numpy()[:, -1])
    assert readout.trainable_weights[0].name.endswith("tcl_embedding:0")


def test_mean_readout_averages_real_positions_only():
    readout = UserReadout("mean", 3)
    emb, mask = tf.ones([2, 3, 3]), tf.constant([[False, True, True], [True, True, True]])
    same, same_mask = readout.append_token(emb, mask)
    assert same is emb and not readout.trainable_weights
    hidden, item_mask = _hidden_and_mask()
    h = hidden.numpy()[:, :3]
    got = readout(hidden[:, :3], item_mask).numpy()
    np.testing.assert_allclose(got[0], h[0, 1:].mean(0))
    np.testing.assert_allclose(got[1], h[1].mean(0))


def test_tcl_plus_mean_concatenates():
    readout = UserReadout("tcl+mean", 3)
    readout.build()
    hidden, item_mask = _hidden_and_mask()
    got = readout(hidden, item_mask).numpy()
    assert got.shape == (2, 6) and readout.output_dim == 6
    np.testing.assert_array_equal(got[:, :3], hidden.numpy()[:, -1])
    np.testing.assert_allclose(got[0, 3:], hidden.numpy()[0, 1:3].mean(0))


def test_readout_rejects_unknown_mode():
    with pytest.raises(ValueError, match="readout"):
        UserReadout("first", 3)


def test_normalized_tcl_plus_mean_layer_normalizes_each_part():
    readout = UserReadout("tcl+mean", 3, normalize=True)
    readout.build()
    hidden, item_mask = _hidden_and_mask()
    got = readout(hidden * 100.0, item_mask).numpy()
    tcl, mean = hidden.numpy()[:, -1] * 100.0, hidden.numpy()[0, 1:3].mean(0) * 100.0

    def layer_norm(x):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)

    np.testing.assert_allclose(got[:, :3], layer_norm(tcl), atol=1e-4)
    np.testing.assert_allclose(got[0, 3:], layer_norm(mean), atol=1e-4)
    # Each part's gain and bias are the task's own: [TCL] + 2 LayerNorms x (gamma, beta).
    assert len(readout.trainable_weights) == 5
    assert UserReadout.from_config(readout.get_config()).normalize


def test_normalized_mean_readout_owns_only_its_norm():
    readout = UserReadout("mean", 3, normalize=True)
    readout.build()
    assert readout.tcl_norm is None and readout.mean_norm is not None
    assert sorted(w.shape.as_list() for w in readout.trainable_weights) == [[3], [3]]


def test_classification_head_starts_near_uniform_on_unit_scale_features():
    """On LayerNorm-ed (unit-scale) read-outs the first logits are small: the loss starts at ~log C
    rather than at confident random guesses (Glorot's default gave logits of std ~1.3 here)."""
    import tf_keras as keras

    from peterrec.trainer.objectives import classification_loss

    keras.utils.set_random_seed(0)
    head = ClassificationHead(5)
    features = keras.layers.LayerNormalization()(tf.random.normal([256, 64]))
    logits = head(features)
    assert float(tf.math.reduce_std(logits)) < 0.3
    labels = tf.random.uniform([256], maxval=5, dtype=tf.int32)
    assert float(classification_loss(logits, labels)) == pytest.approx(np.log(5), abs=0.05)
