"""Tests of the NextItNet / GRec backbone: shapes, config round trip, padding invariance, causality."""

import numpy as np
import pytest

import peterrec  # noqa: F401  (selects tf-keras)
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer.backbone import NextItNetBackbone, ResidualBlock
from peterrec.trainer.config import BackboneConfig

VOCAB = 40


def _backbone(causal=True, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    config = dict(vocab_size=VOCAB, embedding_dim=8, dilations=(1, 2, 4, 8), kernel_size=3, causal=causal)
    config.update(kwargs)
    return NextItNetBackbone(**config).ensure_built()


def _randomise(backbone, seed=1):
    """Non-trivial LayerNorm parameters and biases, so that padding leaks would show."""
    rng = np.random.default_rng(seed)
    backbone.set_weights([w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in backbone.get_weights()])


def _left_pad(sequence, length):
    return [ids.PAD_ID] * (length - len(sequence)) + list(sequence)


@pytest.mark.parametrize("causal", [True, False])
def test_left_padding_never_changes_real_positions(causal):
    backbone = _backbone(causal)
    _randomise(backbone)
    sequence = [5, 9, 17, 4, 33, 12]
    hidden = [backbone(tf.constant([_left_pad(sequence, n)], tf.int32)).numpy()[0] for n in (6, 7, 10, 23)]
    reference = hidden[0]
    for row, length in zip(hidden[1:], (7, 10, 23)):
        np.testing.assert_allclose(row[length - 6:], reference, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(row[: length - 6], 0.0)


def test_padding_leak_would_be_detected_without_masking():
    """Sanity check that the padding test can fail: a block that skips masking leaks biases."""
    backbone = _backbone(False)
    _randomise(backbone)
    sequence = [5, 9, 17]
    short = tf.constant([_left_pad(sequence, 3)], tf.int32)
    long = tf.constant([_left_pad(sequence, 9)], tf.int32)
    embed = backbone.embed
    block = backbone.blocks[0]
    ones_short = tf.ones_like(short, tf.bool)
    ones_long = tf.ones_like(long, tf.bool)   # wrongly treats padding as real
    a = block(embed(short), ones_short).numpy()[0]
    b = block(embed(long), ones_long).numpy()[0, -3:]
    assert not np.allclose(a, b, atol=1e-5)


def test_causal_backbone_does_not_look_ahead():
    backbone = _backbone(True)
    _randomise(backbone)
    a = backbone(tf.constant([[5, 6, 7, 8, 9]])).numpy()
    b = backbone(tf.constant([[5, 6, 7, 30, 31]])).numpy()
    np.testing.assert_allclose(a[0, :3], b[0, :3], atol=1e-6)
    assert not np.allclose(a[0, 3:], b[0, 3:])


def test_non_causal_backbone_sees_the_future():
    backbone = _backbone(False)
    _randomise(backbone)
    a = backbone(tf.constant([[5, 6, 7, 8, 9]])).numpy()
    b = backbone(tf.constant([[5, 6, 7, 8, 31]])).numpy()
    assert not np.allclose(a[0, 0], b[0, 0])


def test_block_matches_the_formula():
    """out = x + ReLU(LN2(Conv_r2(ReLU(LN1(Conv_r1(x)))))) with causal left padding."""
    keras.utils.set_random_seed(3)
    block = ResidualBlock(4, (1, 2), kernel_size=3, causal=True, layer_norm_epsilon=1e-8)
    x = tf.random.normal([2, 6, 4])
    mask = tf.ones([2, 6], tf.bool)
    out = block(x, mask).numpy()

    def conv(inp, layer, dilation):
        kernel, bias = [w.numpy() for w in layer.weights]
        padded = np.pad(inp, [(0, 0), ((3 - 1) * dilation, 0), (0, 0)])
        result = np.zeros(inp.shape[:2] + (kernel.shape[-1],))
        for t in range(inp.shape[1]):
            for j in range(3):
                result[:, t] += padded[:, t + j * dilation] @ kernel[j]
        return result + bias

    def ln(inp, layer):
        gamma, beta = [w.numpy() for w in layer.weights]
        mean = inp.mean(-1, keepdims=True)
        var = inp.var(-1, keepdims=True)
        return (inp - mean) / np.sqrt(var + 1e-8) * gamma + beta

    xn = x.numpy()
    h = np.maximum(ln(conv(xn, block.conv1, 1), block.ln1), 0)
    h = np.maximum(ln(conv(h, block.conv2, 2), block.ln2), 0)
    np.testing.assert_allclose(out, xn + h, atol=1e-5)


def test_config_round_trip_and_embedding_init():
    backbone = _backbone(True, layer_norm_epsilon=1e-6, dropout=0.1)
    config = backbone.get_config()
    clone = NextItNetBackbone.from_config(config)
    assert clone.backbone_config == backbone.backbone_config
    assert backbone.blocks[0].ln1.epsilon == 1e-6
    assert BackboneConfig.from_dict(backbone.backbone_config.to_dict()) == backbone.backbone_config
    assert ResidualBlock.from_config(backbone.blocks[1].get_config()).dilations == (4, 8)
    table = backbone.embedding.embeddings.numpy()
    assert np.abs(table).max() <= 2 * 0.02 + 1e-6      # truncated at two standard deviations
    assert 0.01 < table.std() < 0.03


def test_clone_copies_weights_and_is_independent():
    backbone = _backbone(True)
    copy = backbone.clone()
    batch = tf.constant([[0, 5, 6, 7]])
    np.testing.assert_array_equal(backbone(batch).numpy(), copy(batch).numpy())
    copy.blocks[0].conv1.kernel.assign_add(tf.ones_like(copy.blocks[0].conv1.kernel))
    assert not np.array_equal(backbone.blocks[0].conv1.kernel.numpy(), copy.blocks[0].conv1.kernel.numpy())


def test_distinct_conv_initialisations():
    backbone = _backbone(True)
    first, second = backbone.blocks[0].conv1.kernel.numpy(), backbone.blocks[0].conv2.kernel.numpy()
    assert not np.array_equal(first, second)


def test_item_logits_shape():
    backbone = _backbone(True)
    hidden = backbone(tf.constant([[0, 5, 6]]))
    assert backbone.item_logits(hidden).shape == (1, 3, VOCAB)
