"""Model patches and IAK adapters: identity at init, formulas, serial/parallel wiring, KL term."""

import math

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from peterrec.trainer.backbone import NextItNetBackbone, ResidualBlock
from peterrec.trainer.config import AdapterConfig
from peterrec.trainer.patches import (IAKAdapter, ModelPatch, ParallelBlockPatch, PatchSet, SerialBlockPatch,
                                      block_patch_for, make_adapter)


def _randomise(layer, seed=0, scale=0.3):
    """Perturbs the trainable weights (not counters such as IAK's step)."""
    rng = np.random.default_rng(seed)
    for w in layer.trainable_weights:
        w.assign_add(rng.normal(0, scale, w.shape).astype(np.float32))


_erf = np.vectorize(math.erf)


def _gelu(x):
    """Exact GELU in numpy."""
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def _scale(x):
    """Per-position RMS over the channels, [..., 1] (patches.position_scale in numpy)."""
    return np.sqrt((x ** 2).mean(-1, keepdims=True) + 1e-12)


def test_model_patch_is_identity_at_init_and_matches_the_formula():
    keras.utils.set_random_seed(0)
    patch = ModelPatch(6, bottleneck=2)
    x = tf.random.normal([3, 5, 6])
    np.testing.assert_array_equal(patch(x).numpy(), x.numpy())
    np.testing.assert_array_equal(patch(x, residual=False).numpy(), 0.0)
    _randomise(patch)
    w_down, b1, w_up, b2 = [w.numpy() for w in patch.weights]
    s = _scale(x.numpy())
    expected_delta = s * (_gelu(x.numpy() / s @ w_down + b1) @ w_up + b2)
    np.testing.assert_allclose(patch(x).numpy(), x.numpy() + expected_delta, atol=1e-5)
    np.testing.assert_allclose(patch(x, residual=False).numpy(), expected_delta, atol=1e-5)
    assert patch.count_params() == 6 * 2 + 2 + 2 * 6 + 6


def test_iak_adapter_identity_inference_and_kl():
    keras.utils.set_random_seed(0)
    adapter = IAKAdapter(6, bottleneck=3, beta=0.4, warmup_steps=2)
    x = tf.random.normal([2, 4, 6])
    mask = tf.constant([[False, True, True, True], [True] * 4])
    np.testing.assert_array_equal(adapter(x, mask=mask).numpy(), x.numpy())
    _randomise(adapter, scale=0.5)
    # Inference: z = mu, deterministic, no loss.
    mu_w, mu_b, lv_w, lv_b, dec_w, dec_b = [w.numpy() for w in adapter.trainable_weights]
    s = _scale(x.numpy())
    mu = x.numpy() / s @ mu_w + mu_b
    np.testing.assert_allclose(adapter(x, mask=mask).numpy(), x.numpy() + s * (_gelu(mu) @ dec_w + dec_b),
                               atol=1e-5)
    assert not adapter.losses
    # Training: stochastic output, beta-weighted KL over real positions, warm-up.
    out1 = adapter(x, mask=mask, training=True)
    kl_loss = float(adapter.losses[0])
    log_var = x.numpy() / s @ lv_w + lv_b
    kl = 0.5 * (mu ** 2 + np.exp(log_var) - 1 - log_var).sum(-1)
    expected_kl = kl[mask.numpy()].mean()
    assert kl_loss == 0.0                         # beta(0) = 0
    assert float(adapter.kl_divergence(tf.constant(mu), tf.constant(log_var), mask)) == pytest.approx(
        expected_kl, rel=1e-5)
    out2 = adapter(x, mask=mask, training=True)
    assert float(adapter.losses[0]) == pytest.approx(0.4 * 0.5 * expected_kl, rel=1e-4)
    assert not np.allclose(out1.numpy(), out2.numpy())
    adapter(x, mask=mask, training=True)
    assert float(adapter.current_beta()) == pytest.approx(0.4)


def _manual_block(block, patch, x):
    """docs/method.md section 3 written out with the block's and patch's own sub-layers."""
    def pad(t, d):
        return tf.pad(t, [[0, 0], [2 * d, 0], [0, 0]])
    c1 = block.conv1(pad(x, block.dilations[0]))
    if patch.placement == "serial":
        h = tf.nn.relu(block.ln1(patch.adapter1(c1)))
        c2 = patch.adapter2(block.conv2(pad(h, block.dilations[1])))
    else:
        h = tf.nn.relu(block.ln1(c1 + patch.adapter1(x, residual=False)))
        c2 = block.conv2(pad(h, block.dilations[1])) + patch.adapter2(h, residual=False)
    ln2 = patch.ln2 if patch.ln2 is not None else block.ln2
    return x + tf.nn.relu(ln2(c2))


@pytest.mark.parametrize("placement", ["serial", "parallel"])
@pytest.mark.parametrize("with_ln", [True, False])
def test_block_wiring_matches_method(placement, with_ln):
    keras.utils.set_random_seed(1)
    block = ResidualBlock(6, (1, 2), causal=True)
    x = tf.random.normal([2, 7, 6])
    mask = tf.ones([2, 7], tf.bool)
    plain = block(x, mask).numpy()
    patch = block_patch_for(AdapterConfig(placement=placement, bottleneck=2), 6, with_layer_norm=with_ln)
    assert patch.placement == placement
    patch.copy_layer_norm_from(block)
    patch.build()
    np.testing.assert_allclose(block(x, mask, adapter=patch).numpy(), plain, atol=1e-6)   # identity at init
    _randomise(patch, seed=2)
    got = block(x, mask, adapter=patch).numpy()
    np.testing.assert_allclose(got, _manual_block(block, patch, x).numpy(), atol=1e-5)
    assert not np.allclose(got, plain, atol=1e-3)


def test_patch_set_create_copies_layer_norms_and_matches_blocks():
    keras.utils.set_random_seed(0)
    backbone = NextItNetBackbone(vocab_size=20, embedding_dim=8, dilations=(1, 2, 4, 8, 1, 2)).ensure_built()
    _randomise(backbone)
    patches = PatchSet.create(backbone, AdapterConfig(bottleneck=3), train_layer_norm=True)
    assert len(patches.block_patches) == 3
    for block_patch, block in zip(patches.block_patches, backbone.blocks):
        for mine, theirs in zip(block_patch.ln2.weights, block.ln2.weights):
            np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
            assert mine is not theirs
    no_ln = PatchSet.create(backbone, AdapterConfig(kind="iak"), train_layer_norm=False)
    assert all(bp.ln2 is None for bp in no_ln.block_patches)
    assert isinstance(no_ln.block_patches[0].adapter1, IAKAdapter)
    config = patches.get_config()
    again = PatchSet.from_config(config)
    again.build()
    assert [w.shape for w in again.weights] == [w.shape for w in patches.weights]


def test_patch_set_size_mismatch_is_reported():
    backbone = NextItNetBackbone(vocab_size=20, embedding_dim=8, dilations=(1, 2, 4, 8)).ensure_built()
    wrong = PatchSet(AdapterConfig(), 8, num_blocks=3)
    wrong.build()
    embeddings = backbone.embed(tf.constant([[4, 5]]))
    with pytest.raises(ValueError, match="3 block adapters given but the backbone has 2 blocks"):
        backbone.encode(embeddings, tf.constant([[True, True]]), adapters=wrong.block_patches)


def test_a_block_patch_refuses_a_config_of_another_placement():
    with pytest.raises(ValueError, match="places adapters 'serial'.*says 'parallel'"):
        SerialBlockPatch(AdapterConfig(placement="parallel"), 4)
    assert isinstance(block_patch_for(AdapterConfig(), 4), SerialBlockPatch)   # unset: the default placement
    assert isinstance(block_patch_for(AdapterConfig(placement="parallel"), 4), ParallelBlockPatch)


@pytest.mark.parametrize("kind", ["patch", "iak"])
def test_adapters_work_in_units_of_their_input_scale(kind):
    """delta(c x) = c delta(x): a LayerNorm after the adapter sees the same patched signal whether
    the frozen activation at the insertion point is 0.006 RMS (block 0's first conv on 0.02-scale
    embeddings) or 1. With the plain formula a bias of 0.05, two Adam steps at lr 3e-3 short of
    nothing, erased the tiny signal: LN(x + b2) was nearly one vector at every position."""
    keras.utils.set_random_seed(0)
    adapter = make_adapter(AdapterConfig(kind=kind, bottleneck=3), 8, "a")
    x = tf.random.normal([2, 5, 8])
    adapter(x)
    _randomise(adapter, scale=0.05)
    norm = keras.layers.LayerNormalization(epsilon=1e-8)
    big, tiny = norm(adapter(x)).numpy(), norm(adapter(0.006 * x)).numpy()
    np.testing.assert_allclose(tiny, big, atol=2e-3)      # up to LN1's epsilon
    np.testing.assert_allclose(adapter(0.006 * x, residual=False).numpy(),
                               0.006 * adapter(x, residual=False).numpy(), rtol=1e-4, atol=1e-7)
