"""Strategies choose the trainable set by structure; pretraining + patches beats peter-zero."""

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer.backbone import NextItNetBackbone
from peterrec.trainer.config import TaskConfig
from peterrec.trainer.objectives import NextItemObjective, PretrainingModel
from peterrec.trainer.patches import IAKAdapter, ModelPatch
from peterrec.trainer.strategies import fresh_backbone_like, last_conv_layers, plan_strategy
from peterrec.trainer.task_model import build_task_model


def _backbone(seed=0):
    keras.utils.set_random_seed(seed)
    return NextItNetBackbone(vocab_size=20, embedding_dim=8, dilations=(1, 2, 4, 8)).ensure_built()


def _ids(variables):
    return {id(v) for v in variables}


def test_frozen_strategies_train_only_task_layers():
    backbone = _backbone()
    for strategy in ("peterrec-serial", "peterrec-parallel", "iak", "fine-cls", "peter-zero", "peterrec+items"):
        model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy=strategy))
        assert model.backbone is backbone and backbone.trainable is False
        assert not _ids(model.trainable_weights) & _ids(backbone.weights)
        task_owned = _ids(w for layer in model.task_layers() for w in layer.trainable_weights)
        assert _ids(model.trainable_weights) == task_owned
    serial = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="peterrec-serial"))
    assert isinstance(serial.patches.block_patches[0].adapter1, ModelPatch)
    assert serial.patches.placement == "serial"
    parallel = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="peterrec-parallel"))
    assert parallel.patches.placement == "parallel"
    iak = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="iak"))
    assert isinstance(iak.patches.block_patches[1].adapter2, IAKAdapter)
    cls = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="fine-cls"))
    assert cls.patches is None
    assert _ids(cls.trainable_weights) == _ids(cls.readout.weights + cls.head.weights)


def test_layer_norm_option_uses_task_owned_copies():
    backbone = _backbone()
    with_ln = build_task_model(backbone, TaskConfig("t", num_outputs=3, train_layer_norm=True))
    without = build_task_model(backbone, TaskConfig("t", num_outputs=3, train_layer_norm=False))
    ln_copies = [bp.ln2 for bp in with_ln.patches.block_patches]
    assert all(ln is not None for ln in ln_copies)
    assert _ids(w for ln in ln_copies for w in ln.weights) <= _ids(with_ln.trainable_weights)
    assert not _ids(block.ln2.weights for block in backbone.blocks) & _ids(with_ln.trainable_weights)
    assert all(bp.ln2 is None for bp in without.patches.block_patches)
    assert (with_ln.trainable_parameter_count() - without.trainable_parameter_count()
            == 2 * 8 * len(backbone.blocks))


@pytest.mark.parametrize("count", [1, 2])
def test_fine_last_trains_exactly_the_last_convs_of_a_copy(count):
    backbone = _backbone()
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="fine-last", fine_last_convs=count))
    assert model.backbone is not backbone and backbone.trainable
    convs = last_conv_layers(model.backbone, count)
    assert len(convs) == count and convs[-1] is model.backbone.blocks[-1].conv2
    expected = _ids(w for conv in convs for w in conv.weights) | _ids(model.readout.weights + model.head.weights)
    assert _ids(model.trainable_weights) == expected


def test_fine_all_trains_a_copy_of_the_encoder_but_not_the_pretraining_head():
    backbone = _backbone()
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="fine-all"))
    copy = model.backbone
    assert copy is not backbone
    encoder = _ids(w for layer in copy.encoder_layers() for w in layer.weights)
    assert _ids(model.trainable_weights) == encoder | _ids(model.readout.weights + model.head.weights)
    assert model.trainable_percentage() == pytest.approx(100.0)


def test_plan_rejects_unknown_strategy_and_fresh_backbone_is_untrained():
    backbone = _backbone()
    config = TaskConfig("t", num_outputs=3)
    config.strategy = "fine-some"
    with pytest.raises(ValueError, match="strategy"):
        plan_strategy(backbone, config)
    fresh = fresh_backbone_like(backbone)
    assert fresh.backbone_config == backbone.backbone_config
    assert not np.array_equal(fresh.blocks[0].conv1.kernel.numpy(), backbone.blocks[0].conv1.kernel.numpy())


# ---------------------------------------------------------------------------- mechanism test
GROUP, LENGTH = 100, 12
VOCAB = ids.NUM_RESERVED + 2 * GROUP


def _synthetic_users(rng, n, p_own=0.75):
    """Users with a latent binary trait: each of their items comes from the trait's item group
    with probability p_own, else from the other group (items uniform within a group)."""
    trait = rng.integers(0, 2, n)
    own = rng.random((n, LENGTH)) < p_own
    group = np.where(own, trait[:, None], 1 - trait[:, None])
    items = ids.NUM_RESERVED + group * GROUP + rng.integers(0, GROUP, (n, LENGTH))
    return items.astype(np.int32), trait.astype(np.int32)


def _fine_tune_accuracy(backbone, strategy, train, test, seed):
    keras.utils.set_random_seed(seed)
    model = build_task_model(backbone, TaskConfig("trait", num_outputs=2, strategy=strategy, readout="mean"))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = tf.data.Dataset.from_tensor_slices({"item_ids": train[0], "label": train[1]})
    model.fit(data.shuffle(1000, seed=seed).batch(20).repeat(), steps_per_epoch=40, epochs=1, verbose=0)
    return float(np.mean(np.argmax(model(test[0]).numpy(), axis=-1) == test[1]))


def test_pretrained_patches_beat_peter_zero_on_a_latent_trait():
    """Few labelled users (40) and many unlabelled sequences (1000): next-item pretraining groups
    the items by the latent trait, so patches on the pretrained backbone generalise to held-out
    users, while the same patches on an untrained backbone stay near chance."""
    seed = 3
    rng = np.random.default_rng(seed)
    unlabelled, _ = _synthetic_users(rng, 1000)
    train, test = _synthetic_users(rng, 40), _synthetic_users(rng, 400)

    keras.utils.set_random_seed(seed)
    backbone = NextItNetBackbone(vocab_size=VOCAB, embedding_dim=16, dilations=(1, 2, 4, 8)).ensure_built()
    untrained = fresh_backbone_like(backbone)
    pretraining = PretrainingModel(backbone, NextItemObjective())
    pretraining.compile(optimizer=keras.optimizers.Adam(0.01))
    sequences = tf.data.Dataset.from_tensor_slices({"item_ids": unlabelled}).shuffle(5000, seed=seed)
    pretraining.fit(sequences.batch(64).repeat(), steps_per_epoch=120, epochs=1, verbose=0)

    pretrained_accuracy = _fine_tune_accuracy(backbone, "peterrec-serial", train, test, seed)
    zero_accuracy = _fine_tune_accuracy(untrained, "peter-zero", train, test, seed)
    assert pretrained_accuracy > 0.7, (pretrained_accuracy, zero_accuracy)
    assert pretrained_accuracy - zero_accuracy > 0.2, (pretrained_accuracy, zero_accuracy)
