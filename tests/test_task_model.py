"""Tests of TaskModel: identity at init, frozen backbone bit-identical after fine-tuning, several
tasks on one backbone, trainable counts, the cold-start task and the fit/evaluate loop."""

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer.backbone import NextItNetBackbone
from peterrec.trainer.config import AdapterConfig, TaskConfig
from peterrec.trainer.task_model import MultiTaskModel, build_task_model

VOCAB = 30


def _backbone(causal=True, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = NextItNetBackbone(vocab_size=VOCAB, embedding_dim=8, dilations=(1, 2, 4, 8), causal=causal)
    backbone.ensure_built()
    rng = np.random.default_rng(seed)
    backbone.set_weights([w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in backbone.get_weights()])
    return backbone


def _batch(n=16, length=7, seed=0, kind="classification", classes=3):
    rng = np.random.default_rng(seed)
    item_ids = rng.integers(ids.NUM_RESERVED, VOCAB, size=(n, length)).astype(np.int32)
    for row in range(n):
        item_ids[row, : rng.integers(0, length - 1)] = ids.PAD_ID
    batch = {"item_ids": tf.constant(item_ids)}
    if kind == "classification":
        batch["label"] = tf.constant(rng.integers(0, classes, size=n).astype(np.int32))
    else:
        targets = rng.integers(1, classes, size=(n, 2)).astype(np.int32)
        targets[::3, 1] = 0
        batch["target_item_ids"] = tf.constant(targets)
    return batch


def _train(model, batch, steps=3, lr=0.05):
    model.compile(optimizer=keras.optimizers.Adam(lr))
    dataset = tf.data.Dataset.from_tensors(batch).repeat(steps)
    model.fit(dataset, epochs=1, verbose=0)


@pytest.mark.parametrize("strategy", ["peterrec-serial", "peterrec-parallel", "iak"])
@pytest.mark.parametrize("causal", [True, False])
def test_patched_network_starts_at_the_pretrained_function(strategy, causal):
    backbone = _backbone(causal)
    batch = _batch()
    reference = build_task_model(backbone, TaskConfig("ref", num_outputs=3, strategy="fine-cls"))
    patched = build_task_model(backbone, TaskConfig("p", num_outputs=3, strategy=strategy))
    # Same read-out/head weights, so the logits compare the encoders.
    patched.readout.set_weights(reference.readout.get_weights())
    patched.head.set_weights(reference.head.get_weights())
    np.testing.assert_allclose(patched.user_vector(batch).numpy(), reference.user_vector(batch).numpy(),
                               rtol=0, atol=1e-6)
    np.testing.assert_allclose(patched(batch).numpy(), reference(batch).numpy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("strategy", ["peterrec-serial", "peterrec-parallel", "iak"])
def test_patch_fine_tuning_leaves_the_backbone_bit_identical(strategy):
    backbone = _backbone()
    before = [w.numpy().copy() for w in backbone.weights]
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy=strategy,
                                                  adapter=AdapterConfig(iak_warmup_steps=2)))
    patch_before = [w.numpy().copy() for w in model.patches.trainable_weights]
    assert not any(any(w is b for b in backbone.weights) for w in model.trainable_weights)
    _train(model, _batch(), steps=4)
    for w, old in zip(backbone.weights, before):
        assert np.array_equal(w.numpy(), old), w.name
    changed = [not np.array_equal(w.numpy(), old) for w, old in zip(model.patches.trainable_weights, patch_before)]
    assert all(changed), [w.name for w, c in zip(model.patches.trainable_weights, changed) if not c]


def test_the_frozen_check_can_fail_for_fine_all_on_its_own_copy():
    backbone = _backbone()
    before = [w.numpy().copy() for w in backbone.weights]
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="fine-all"))
    assert model.backbone is not backbone
    _train(model, _batch())
    # The shared backbone is untouched; the task's copy moved.
    for w, old in zip(backbone.weights, before):
        assert np.array_equal(w.numpy(), old)
    copy_conv = model.backbone.blocks[0].conv1.kernel.numpy()
    assert not np.array_equal(copy_conv, backbone.blocks[0].conv1.kernel.numpy())


def test_two_tasks_on_one_backbone_do_not_interfere():
    backbone = _backbone()
    batch = _batch()
    first = build_task_model(backbone, TaskConfig("a", num_outputs=3, strategy="peterrec-serial"))
    second = build_task_model(backbone, TaskConfig("b", num_outputs=3, strategy="peterrec-parallel"))
    assert first.backbone is second.backbone is backbone
    second_before = second(batch).numpy()
    _train(first, batch, steps=4)
    np.testing.assert_array_equal(second(batch).numpy(), second_before)
    both = MultiTaskModel({"a": first, "b": second})
    np.testing.assert_array_equal(both(batch, task="b").numpy(), second_before)
    np.testing.assert_array_equal(both(batch, task="a").numpy(), first(batch).numpy())
    assert not np.allclose(both(batch, task="a").numpy(), second_before)
    with pytest.raises(KeyError):
        both(batch, task="c")


def test_trainable_counts_and_percentages():
    backbone = _backbone()
    counts = {}
    for strategy in ("peterrec-serial", "fine-all", "fine-cls", "fine-last", "iak"):
        # The plain [TCL] read-out, whose parameter count the formulas below spell out.
        model = build_task_model(backbone, TaskConfig("t", num_outputs=4, strategy=strategy, readout="tcl",
                                                      readout_norm=False, adapter=AdapterConfig(bottleneck=2)))
        counts[strategy] = model.parameter_report()
    fine_all = counts["fine-all"]
    assert fine_all["trainable_percent"] == pytest.approx(100.0)
    d, classes = 8, 4
    head = d * classes + classes
    tcl = d
    assert counts["fine-cls"]["trainable_params"] == head + tcl
    patch = 2 * (d * 2 + 2 + 2 * d + d)            # two patches per block
    ln2 = 2 * d
    assert counts["peterrec-serial"]["trainable_params"] == 2 * (patch + ln2) + head + tcl
    conv = 3 * d * d + d
    assert counts["fine-last"]["trainable_params"] == 2 * conv + head + tcl
    for report in counts.values():
        assert report["fine_all_params"] == fine_all["trainable_params"]


def test_task_layers_are_what_a_patch_artifact_saves():
    backbone = _backbone()
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="peterrec-serial"))
    names = [layer.name for layer in model.task_layers()]
    assert names == ["t_patches", "readout", "head"]
    task_vars = {id(v) for v in model.task_variables()}
    assert {id(v) for v in model.trainable_weights} <= task_vars
    assert not task_vars & {id(v) for v in backbone.weights}
    fine_last = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="fine-last", fine_last_convs=1))
    assert fine_last.task_layers()[-1] is fine_last.backbone.blocks[-1].conv2


def test_cold_start_task_trains_and_evaluates():
    backbone = _backbone()
    batch = _batch(kind="cold_start", classes=12)
    model = build_task_model(backbone, TaskConfig("cs", kind="cold_start", num_outputs=12,
                                                  strategy="peterrec-serial", readout="tcl+mean"))
    logits = model(batch).numpy()
    assert logits.shape == (16, 12)
    assert (logits[:, 0] < -1e8).all()        # padding id never ranks
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    before = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(30), verbose=0)
    after = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
    assert after["loss"] < before["loss"]
    assert {"hr@10", "ndcg@10", "mrr@5", "sampled_hr@10", "sampled_mrr@5"} <= set(after)


def test_cold_start_sampled_softmax_option():
    backbone = _backbone()
    batch = _batch(kind="cold_start", classes=12)
    config = TaskConfig("cs", kind="cold_start", num_outputs=12, strategy="fine-cls", softmax="sampled",
                        head_embedding_dim=4)
    model = build_task_model(backbone, config, target_counts=[0] + list(range(1, 12)))
    assert model.head.item_embeddings.shape == (12, 4)
    loss, logits = model.compute_task_loss(batch, training=True)
    assert logits is None and np.isfinite(loss.numpy()) and loss.numpy() > 0


def test_classification_fit_reports_accuracy_and_f1():
    backbone = _backbone()
    batch = _batch()
    model = build_task_model(backbone, TaskConfig("g", num_outputs=3, strategy="fine-cls", readout="mean"))
    model.compile(optimizer=keras.optimizers.Adam(0.1))
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(40), verbose=0)
    result = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
    assert set(result) >= {"loss", "accuracy", "macro_f1"}
    assert result["accuracy"] > 0.6             # 16 training users memorised


def test_iak_adds_a_warmed_up_kl_term_only_in_training():
    backbone = _backbone()
    model = build_task_model(backbone, TaskConfig("i", num_outputs=3, strategy="iak",
                                                  adapter=AdapterConfig(iak_beta=0.5, iak_warmup_steps=4)))
    batch = _batch()
    model(batch, training=False)
    assert not model.losses
    adapter = model.patches.block_patches[0].adapter1
    assert float(adapter.current_beta()) == 0.0
    model(batch, training=True)
    assert len(model.losses) == 2 * len(backbone.blocks)
    assert float(adapter.current_beta()) == pytest.approx(0.5 / 4)
    for _ in range(5):
        model(batch, training=True)
    assert float(adapter.current_beta()) == pytest.approx(0.5)
    a, b = model(batch, training=False).numpy(), model(batch, training=False).numpy()
    np.testing.assert_array_equal(a, b)       # z = mu at inference: deterministic


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("readout", ["tcl", "mean", "tcl+mean"])
def test_task_outputs_do_not_depend_on_the_amount_of_left_padding(causal, readout):
    backbone = _backbone(causal)
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="peterrec-parallel", readout=readout))
    for w in model.patches.trainable_weights:          # non-trivial patches
        w.assign_add(tf.random.stateless_normal(w.shape, seed=[1, 2]) * 0.3)
    sequence = [5, 9, 17, 4, 23]
    logits = [model(tf.constant([[ids.PAD_ID] * pad + sequence], tf.int32)).numpy()[0] for pad in (0, 3, 20)]
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-5)
    np.testing.assert_allclose(logits[2], logits[0], atol=1e-5)


def _two_unequal_batches(kind, classes):
    """One batch of 20 users, and the same users as a dataset of two batches of 16 and 4."""
    whole = _batch(n=20, kind=kind, classes=classes, seed=3)
    return whole, tf.data.Dataset.from_tensor_slices(whole).batch(16)


@pytest.mark.parametrize("kind, classes", [("classification", 3), ("cold_start", 12)])
def test_evaluate_loss_is_the_mean_over_examples_not_over_batches(kind, classes):
    """A last batch of 4 users weighs 4/20 of the reported loss (early stopping compares it)."""
    from peterrec.trainer import objectives

    backbone = _backbone()
    model = build_task_model(backbone, TaskConfig("w", kind=kind, num_outputs=classes, strategy="fine-cls",
                                                  readout="mean"))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    whole, batches = _two_unequal_batches(kind, classes)
    logits = model(whole).numpy()
    if kind == "classification":
        exact = float(objectives.classification_loss(logits, whole["label"]))
    else:
        exact = float(objectives.cold_start_loss(logits, whole["target_item_ids"]))
        counted = whole["target_item_ids"].numpy() >= len(ids.TARGET_RESERVED_TOKENS)
        assert float(model.loss_weight(whole)) == float(counted.sum())      # padding targets do not count
    per_batch = [float(model.compute_task_loss(b, training=False)[0]) for b in batches]
    assert abs(np.mean(per_batch) - exact) > 1e-3           # the unweighted mean is a different number
    result = model.evaluate(batches, verbose=0, return_dict=True)
    assert result["loss"] == pytest.approx(exact, rel=1e-5)


def test_training_loss_is_the_mean_over_examples_not_over_batches():
    backbone = _backbone()
    model = build_task_model(backbone, TaskConfig("w", num_outputs=3, strategy="fine-cls", readout="mean"))
    model.compile(optimizer=keras.optimizers.SGD(0.0))     # no update: every step sees the same model
    whole, batches = _two_unequal_batches("classification", 3)
    exact = float(model.compute_task_loss(whole, training=True)[0])
    history = model.fit(batches, epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(exact, rel=1e-5)
