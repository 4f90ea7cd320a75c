"""Tests of the task-owned item table (peterrec.trainer.item_knowledge) and the peterrec+items
strategy: padding contributes nothing, the trainable set is chosen by structure, the parameter
shares, the frozen backbone stays bit-identical, the artifact round trip, the CLI, and a label that
depends only on item identity, learnt by peterrec+items and not by plain peterrec-serial."""

import numpy as np
import pytest

import peterrec  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer.backbone import NextItNetBackbone
from peterrec.trainer.config import TaskConfig
from peterrec.trainer.item_knowledge import ItemKnowledge
from peterrec.trainer.patches import ModelPatch
from peterrec.trainer.task_model import build_task_model

VOCAB = 30


def _backbone(vocab=VOCAB, dim=8, seed=0):
    keras.utils.set_random_seed(seed)
    backbone = NextItNetBackbone(vocab_size=vocab, embedding_dim=dim, dilations=(1, 2, 4, 8)).ensure_built()
    rng = np.random.default_rng(seed)
    backbone.set_weights([w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in backbone.get_weights()])
    return backbone


def _ids(variables):
    return {id(v) for v in variables}


def _batch(n=16, length=7, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    item_ids = rng.integers(ids.NUM_RESERVED, VOCAB, size=(n, length)).astype(np.int32)
    for row in range(n):
        item_ids[row, : rng.integers(0, length - 1)] = ids.PAD_ID
    return {"item_ids": tf.constant(item_ids), "label": tf.constant(rng.integers(0, classes, n).astype(np.int32))}


# ---------------------------------------------------------------------------- the layer
def test_layer_pools_real_positions_and_ignores_padding():
    layer = ItemKnowledge(VOCAB, rank=3, name="items")
    layer.build()
    assert np.all(layer.table.numpy() == 0.0)  # zero init: the task starts at the plain patched model
    table = np.random.default_rng(0).normal(size=(VOCAB, 3)).astype(np.float32)
    layer.table.assign(table)
    item_ids = np.array([[0, 0, 5, 6, 7], [4, 9, 12, 30 - 1, 8], [0, 0, 0, 0, 11], [0, 0, 0, 0, 0]], np.int32)
    out = layer(item_ids).numpy()
    for row, items in enumerate(item_ids):
        real = items[items != ids.PAD_ID]
        expected = table[real].mean(axis=0) if len(real) else np.zeros(3, np.float32)
        np.testing.assert_allclose(out[row], expected, rtol=1e-6, atol=1e-6)
    # The padding row can hold anything; more or less left padding changes nothing.
    layer.table.assign(np.where(np.arange(VOCAB)[:, None] == ids.PAD_ID, 1e3, table).astype(np.float32))
    np.testing.assert_allclose(layer(item_ids).numpy(), out, rtol=1e-6, atol=1e-6)
    padded = np.concatenate([np.zeros((4, 3), np.int32), item_ids], axis=1)
    np.testing.assert_allclose(layer(padded).numpy(), out, rtol=1e-6, atol=1e-6)

    sqrt = ItemKnowledge(VOCAB, rank=3, pooling="sqrt")
    sqrt.build()
    sqrt.table.assign(table)
    real = item_ids[1]
    np.testing.assert_allclose(sqrt(item_ids).numpy()[1], table[real].sum(axis=0) / np.sqrt(len(real)), rtol=1e-5)

    config = layer.get_config()
    assert (config["vocab_size"], config["rank"], config["pooling"]) == (VOCAB, 3, "mean")
    assert ItemKnowledge.from_config(config).rank == 3
    with pytest.raises(ValueError, match="rank"):
        ItemKnowledge(VOCAB, rank=0)
    with pytest.raises(ValueError, match="pooling"):
        ItemKnowledge(VOCAB, pooling="max")


def test_config_field_validation_and_old_configs():
    config = TaskConfig("t", strategy="peterrec+items", item_rank=4)
    assert config.uses_item_knowledge and config.uses_adapters
    assert (config.effective_adapter().kind, config.effective_adapter().placement) == ("patch", "serial")
    assert TaskConfig.from_dict(config.to_dict()) == config
    old = TaskConfig("t").to_dict()
    del old["item_rank"], old["item_pooling"]  # an artifact written before the field existed
    assert TaskConfig.from_dict(old).item_rank == 8 and not TaskConfig.from_dict(old).uses_item_knowledge
    with pytest.raises(ValueError, match="item_rank"):
        TaskConfig("t", strategy="peterrec+items", item_rank=0).validate()
    with pytest.raises(ValueError, match="item_pooling"):
        TaskConfig("t", strategy="peterrec+items", item_pooling="max").validate()


# ---------------------------------------------------------------------------- the strategy
def test_strategy_trains_patches_and_table_by_structure_and_starts_at_peterrec_serial():
    backbone = _backbone()
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="peterrec+items", item_rank=5))
    serial = build_task_model(backbone, TaskConfig("s", num_outputs=3, strategy="peterrec-serial"))
    assert backbone.trainable is False and model.backbone is backbone
    assert isinstance(model.patches.block_patches[0].adapter1, ModelPatch) and model.patches.placement == "serial"
    assert model.item_knowledge in model.task_layers() and serial.item_knowledge is None
    assert model.item_knowledge.table.shape == (VOCAB, 5)
    assert not _ids(model.trainable_weights) & _ids(backbone.weights)
    assert _ids(model.trainable_weights) == _ids(w for layer in model.task_layers() for w in layer.trainable_weights)
    assert model.item_knowledge.table.trainable
    # The table starts at zero: the user vector is peterrec-serial's plus rank zeros.
    serial.patches.set_weights(model.patches.get_weights())
    serial.readout.set_weights(model.readout.get_weights())
    batch = _batch()
    user = model.user_vector(batch).numpy()
    assert user.shape == (16, model.readout.output_dim + 5)
    np.testing.assert_allclose(user[:, :model.readout.output_dim], serial.user_vector(batch).numpy(), atol=1e-6)
    assert np.all(user[:, model.readout.output_dim:] == 0.0)
    assert (model.trainable_parameter_count() - serial.trainable_parameter_count()
            == VOCAB * 5 + 5 * 3)  # the table and the head's weights on it


def test_parameter_shares_for_movielens_sizes():
    """The shares stated in the item_knowledge docstring: vocab 3,700, d 64, default backbone."""
    backbone = NextItNetBackbone(vocab_size=3700, embedding_dim=64).ensure_built()
    serial = build_task_model(backbone, TaskConfig("g", num_outputs=2, strategy="peterrec-serial")).parameter_report()
    items = build_task_model(backbone, TaskConfig("g", num_outputs=2, strategy="peterrec+items")).parameter_report()
    assert serial["fine_all_params"] == 337218 and serial["trainable_params"] == 18114
    assert items["trainable_params"] == 18114 + 3700 * 8 + 8 * 2 == 47730
    assert items["trainable_percent"] == pytest.approx(14.15, abs=0.01)
    assert serial["trainable_percent"] == pytest.approx(5.37, abs=0.01)


def test_fine_tuning_leaves_the_backbone_bit_identical_and_trains_the_table():
    backbone = _backbone()
    before = [w.numpy().copy() for w in backbone.weights]
    model = build_task_model(backbone, TaskConfig("t", num_outputs=3, strategy="peterrec+items"))
    owned_before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(tf.data.Dataset.from_tensors(_batch()).repeat(4), epochs=1, verbose=0)
    for w, old in zip(backbone.weights, before):
        assert np.array_equal(w.numpy(), old), w.name
    unchanged = [w.name for w, old in zip(model.trainable_weights, owned_before) if np.array_equal(w.numpy(), old)]
    assert not unchanged, unchanged
    table = model.item_knowledge.table.numpy()
    seen = np.unique(_batch()["item_ids"].numpy())
    assert np.all(table[ids.PAD_ID] == 0.0)  # padding never gets a gradient
    assert np.all(np.abs(table[seen[seen != ids.PAD_ID]]).sum(axis=1) > 0)


def test_patch_artifact_round_trip_restores_the_table_exactly(tmp_path):
    from peterrec.components.vocabulary import Vocabulary
    from peterrec.trainer import artifacts

    vocabulary = Vocabulary.from_counts("item", {f"item{i}": 100 - i for i in range(VOCAB - ids.NUM_RESERVED)})
    backbone = _backbone()
    export_dir = artifacts.export_backbone(backbone, backbone.backbone_config, vocabulary, str(tmp_path / "bb"))
    model = build_task_model(backbone, TaskConfig("items", num_outputs=3, strategy="peterrec+items", item_rank=4))
    rng = np.random.default_rng(1)
    for w in model.task_variables():
        w.assign(w.numpy() + rng.normal(0, 0.1, w.shape).astype(np.float32))
    metadata = artifacts.PatchMetadata(
        task_name="items", kind="classification", strategy="peterrec+items",
        backbone_fingerprint=artifacts.backbone_fingerprint(backbone, vocabulary.fingerprint),
        task_config=model.config.to_dict(),
        **{k: v for k, v in model.parameter_report().items() if k != "trainable_percent"})
    path = artifacts.save_patch_artifact(model, metadata, str(tmp_path / "patch"))
    stored = artifacts.read_patch_metadata(path)
    assert {"name": model.item_knowledge.table.name, "shape": [VOCAB, 4]} in stored.variables
    assert stored.trainable_params == model.trainable_parameter_count()

    shared, _, shared_vocabulary = artifacts.load_backbone(export_dir)
    loaded, _ = artifacts.load_patch_artifact(path, shared, shared_vocabulary)
    assert loaded.backbone is shared and loaded.config.item_rank == 4
    for a, b in zip(model.task_variables(), loaded.task_variables()):
        assert a.shape == b.shape and a.numpy().tobytes() == b.numpy().tobytes(), a.name
    batch = _batch()
    np.testing.assert_allclose(loaded(batch).numpy(), model(batch).numpy(), atol=1e-5, rtol=0)


def test_cli_offers_the_strategy_and_its_rank():
    from peterrec import cli as root_cli
    from peterrec.trainer import cli

    assert "peterrec+items" in cli.STRATEGY_CHOICES
    args = root_cli.build_parser().parse_args(
        ["finetune", "--backbone", "b", "--examples", "e", "--task-name", "gender", "--kind", "classification",
         "--strategy", "peterrec+items", "--item-rank", "4", "--output", "o"])
    task = cli.finetune_config_from_args(args).task
    assert (task.strategy, task.item_rank) == ("peterrec+items", 4)
    assert task.effective_adapter().placement == "serial"


# ---------------------------------------------------------------------------- what it is for
NUM_ITEMS, LENGTH, KEYS = 300, 12, 20


def _has_key_item(rng, n, keys):
    """Users with uniformly random items (some left padding); label 1 iff one of ``keys`` is among
    them: a label that depends only on item identity, with no sequential structure to it."""
    items = (ids.NUM_RESERVED + rng.integers(0, NUM_ITEMS, (n, LENGTH))).astype(np.int32)
    for row in range(n):
        items[row, : rng.integers(0, LENGTH // 2)] = ids.PAD_ID
    return items, np.isin(items, keys).any(axis=1).astype(np.int32)


def _accuracy(backbone, strategy, train, test):
    keras.utils.set_random_seed(1)
    model = build_task_model(backbone, TaskConfig("has", num_outputs=2, strategy=strategy))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = tf.data.Dataset.from_tensor_slices({"item_ids": train[0], "label": train[1]})
    model.fit(data.shuffle(1000, seed=0).batch(32), epochs=8, verbose=0)
    return float(np.mean(np.argmax(model(test[0]).numpy(), axis=-1) == test[1]))


def test_item_table_learns_an_item_identity_label_that_patches_do_not():
    """Whether a user has one of 20 given items (of 300): about half the users do. The frozen
    backbone's read-out does not single out those items, so peterrec-serial stays near the
    majority rate; the task's own item table is a factorised logistic regression on the bag of
    items and learns it in a few epochs."""
    rng = np.random.default_rng(0)
    keys = ids.NUM_RESERVED + rng.choice(NUM_ITEMS, KEYS, replace=False)
    train, test = _has_key_item(rng, 800, keys), _has_key_item(rng, 400, keys)
    backbone = _backbone(vocab=ids.NUM_RESERVED + NUM_ITEMS, dim=16)
    serial = _accuracy(backbone, "peterrec-serial", train, test)
    items = _accuracy(backbone, "peterrec+items", train, test)
    majority = max(test[1].mean(), 1 - test[1].mean())
    assert items > 0.8, (items, serial, majority)
    assert items - serial > 0.2, (items, serial, majority)


# ---------------------------------------------------------------------------- end to end
def test_cli_fine_tuned_items_task_is_served_by_the_assembled_model(tmp_path, capsys):
    """pretrain -> ``peterrec finetune --strategy peterrec+items`` (cold start) -> the served
    SavedModel: the trained task's signature reproduces the task model loaded from its artifact,
    and fine-tuning left the backbone export as pretraining wrote it."""
    import json

    from peterrec import cli as root_cli
    from peterrec.serving import assembly, random_artifacts, signatures
    from peterrec.trainer import artifacts, tiny_examples

    dataset = tiny_examples.write_tiny_dataset(str(tmp_path / "data"), num_users=40, num_items=20)
    common = ["--epochs", "1", "--batch-size", "16", "--max-len", "10", "--patience", "0", "--quiet"]
    assert root_cli.main(["pretrain", "--examples", dataset.pretrain_examples, "--vocabulary",
                          dataset.item_vocabulary_dir, "--output", str(tmp_path / "pretrain"), "--dim", "8",
                          "--dilations", "1,2", *common]) == 0
    export_dir = json.loads(capsys.readouterr().out)["export_dir"]
    fingerprint = artifacts.read_backbone_metadata(export_dir)["fingerprint"]
    assert root_cli.main(["finetune", "--backbone", export_dir, "--examples", dataset.cold_start_examples,
                          "--task-name", "shop", "--kind", "cold_start", "--strategy", "peterrec+items",
                          "--item-rank", "3", "--output", str(tmp_path / "shop"), "--task-vocabulary",
                          dataset.target_vocabulary_dir, "--item-vocabulary", dataset.item_vocabulary_dir,
                          "--bottleneck", "4", *common]) == 0
    patch_dir = json.loads(capsys.readouterr().out)["patch_dir"]
    metadata = artifacts.read_patch_metadata(patch_dir)
    assert metadata.strategy == "peterrec+items" and metadata.task_config["item_rank"] == 3
    assert artifacts.read_backbone_metadata(export_dir)["fingerprint"] == fingerprint

    backbone, _, item_vocabulary = artifacts.load_backbone(export_dir)
    trained, _ = artifacts.load_patch_artifact(patch_dir, backbone, item_vocabulary)
    assert np.any(trained.item_knowledge.table.numpy() != 0.0)  # fine-tuning moved the table
    result = assembly.export_serving_model(export_dir, [patch_dir], str(tmp_path / "models" / "m"),
                                           top_k=3, max_len=10, warmup=False, write_serving_files=False)
    loaded = tf.saved_model.load(result.path)
    rows = [list(item_vocabulary.tokens[:4]), list(item_vocabulary.tokens[5:12]), [item_vocabulary.tokens[2]]]
    outputs = loaded.signatures["shop"](items=tf.constant(signatures.pad_item_rows(rows)))
    logits = trained(random_artifacts.left_padded_ids(item_vocabulary, rows, 10), training=False).numpy()[:, 1:]
    order = np.argsort(-logits, axis=1)[:, :3]
    np.testing.assert_allclose(outputs["scores"].numpy(), np.take_along_axis(logits, order, axis=1), atol=1e-5)
