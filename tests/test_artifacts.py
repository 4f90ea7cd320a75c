"""Tests of peterrec.trainer.artifacts: backbone export round trip, fingerprints, patch artifacts."""

import dataclasses
import json
import os

import numpy as np
import pytest

import peterrec  # noqa: F401
from peterrec.components.vocabulary import Vocabulary
from peterrec.trainer import artifacts

D = 16
DILATIONS = (1, 2, 1, 2)


def _vocabulary(num_items=300, prefix="item"):
    return Vocabulary.from_counts("item", {f"{prefix}{i}": 1000 - i for i in range(num_items)})


def _backbone(vocabulary, seed=0):
    import tensorflow as tf

    from peterrec.trainer.backbone import NextItNetBackbone

    tf.keras.utils.set_random_seed(seed)
    return NextItNetBackbone(vocab_size=len(vocabulary), embedding_dim=D, dilations=DILATIONS).ensure_built()


def _perturb(variables, seed):
    """Stands in for fine-tuning: moves every given variable away from its initial value."""
    rng = np.random.default_rng(seed)
    for variable in variables:
        variable.assign(variable.numpy() + rng.normal(0, 0.1, variable.shape).astype(variable.dtype.as_numpy_dtype))


def _inputs():
    return np.array([[0, 0, 5, 6, 7], [4, 9, 12, 30, 8], [0, 0, 0, 0, 11]], np.int32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    vocabulary = _vocabulary()
    backbone = _backbone(vocabulary)
    _perturb(backbone.weights, seed=1)  # weights that no fresh initialisation reproduces
    export_dir = str(tmp_path_factory.mktemp("backbone") / "export")
    artifacts.export_backbone(backbone, backbone.backbone_config, vocabulary, export_dir)
    return backbone, vocabulary, export_dir


def test_backbone_round_trip_is_bit_identical(exported):
    backbone, vocabulary, export_dir = exported
    loaded, config, loaded_vocabulary = artifacts.load_backbone(export_dir)
    assert config == backbone.backbone_config
    assert loaded_vocabulary == vocabulary
    assert loaded.trainable is False
    assert len(loaded.weights) == len(backbone.weights)
    for original, restored in zip(backbone.weights, loaded.weights):
        assert original.numpy().tobytes() == restored.numpy().tobytes()
    np.testing.assert_array_equal(loaded(_inputs()).numpy(), backbone(_inputs()).numpy())
    assert artifacts.load_backbone(export_dir, trainable=True)[0].trainable is True


def test_export_layout_signature_and_asset(exported):
    import tensorflow as tf

    backbone, vocabulary, export_dir = exported
    metadata = artifacts.read_backbone_metadata(export_dir)
    assert metadata["vocabulary_fingerprint"] == vocabulary.fingerprint
    assert metadata["fingerprint"] == artifacts.backbone_fingerprint(backbone, vocabulary.fingerprint)
    with open(os.path.join(export_dir, "assets", "vocabulary.json")) as handle:
        assert json.load(handle)["fingerprint"] == vocabulary.fingerprint
    served = tf.saved_model.load(export_dir).signatures[artifacts.SERVING_SIGNATURE]
    hidden = served(item_ids=tf.constant(_inputs()))["hidden_states"].numpy()
    np.testing.assert_allclose(hidden, backbone(_inputs()).numpy(), atol=1e-6)
    assert not [name for name in os.listdir(os.path.dirname(export_dir)) if name.startswith(".")]


def test_export_rejects_a_vocabulary_of_another_size(exported, tmp_path):
    backbone, _, _ = exported
    with pytest.raises(artifacts.ArtifactError, match="different runs"):
        artifacts.export_backbone(backbone, backbone.backbone_config, _vocabulary(50), str(tmp_path / "x"))


def test_tampered_export_fails_clearly(exported, tmp_path):
    import shutil

    _, _, export_dir = exported
    copy = str(tmp_path / "copy")
    shutil.copytree(export_dir, copy)
    config_path = os.path.join(copy, artifacts.BACKBONE_CONFIG_FILE)
    with open(config_path) as handle:
        metadata = json.load(handle)
    metadata["fingerprint"] = "0" * 64
    with open(config_path, "w") as handle:
        json.dump(metadata, handle)
    with pytest.raises(artifacts.ArtifactError, match="fingerprint"):
        artifacts.load_backbone(copy)


def _task(name, kind="classification", strategy="peterrec-serial", num_outputs=3):
    from peterrec.trainer.config import AdapterConfig, TaskConfig

    return TaskConfig(name=name, kind=kind, num_outputs=num_outputs, strategy=strategy,
                      adapter=AdapterConfig(bottleneck=4))


def _metadata(task_model, backbone, vocabulary):
    return artifacts.PatchMetadata(
        task_name=task_model.config.name, kind=task_model.config.kind, strategy=task_model.config.strategy,
        backbone_fingerprint=artifacts.backbone_fingerprint(backbone, vocabulary.fingerprint),
        task_config=task_model.config.to_dict(), metrics={"accuracy": 0.5},
        **{k: v for k, v in task_model.parameter_report().items() if k != "trainable_percent"})


def test_several_patches_on_one_backbone_reproduce_their_models(exported, tmp_path):
    from peterrec.trainer.strategies import fresh_backbone_like
    from peterrec.trainer.task_model import build_task_model

    _, _, export_dir = exported
    tuned_backbone, _, vocabulary = artifacts.load_backbone(export_dir)
    tasks = [_task("gender"), _task("age", strategy="peterrec-parallel", num_outputs=5),
             _task("coldrec", kind="cold_start", num_outputs=20), _task("life", strategy="fine-last"),
             _task("zero", strategy="peter-zero"), _task("all", strategy="fine-all"),
             _task("items", strategy="peterrec+items")]
    expected, paths = {}, {}
    for seed, config in enumerate(tasks):
        base = fresh_backbone_like(tuned_backbone) if config.strategy == "peter-zero" else tuned_backbone
        model = build_task_model(base, config)
        _perturb(model.trainable_weights, seed=10 + seed)
        expected[config.name] = model(_inputs()).numpy()
        paths[config.name] = artifacts.save_patch_artifact(
            model, _metadata(model, tuned_backbone, vocabulary), str(tmp_path / config.name))
    before = [w.numpy().copy() for w in tuned_backbone.weights]

    shared, _, shared_vocabulary = artifacts.load_backbone(export_dir)
    loaded = {name: artifacts.load_patch_artifact(path, shared, shared_vocabulary) for name, path in paths.items()}
    for name, (model, metadata) in loaded.items():
        assert metadata.task_name == name
        adapter = metadata.task_config["adapter"]       # stored as trained, not left to the strategy table
        assert (adapter["kind"], adapter["placement"]) == (("patch", "parallel") if name == "age" else
                                                           ("patch", "serial")), name
        np.testing.assert_allclose(model(_inputs()).numpy(), expected[name], atol=1e-5, rtol=0)
    for name in ("gender", "age", "coldrec", "items"):
        assert loaded[name][0].backbone is shared
    # Loading never changes the shared backbone, and fine-tuning never changed the tuned one.
    exported_weights = artifacts.load_backbone(export_dir)[0].weights
    for a, b, c in zip(shared.weights, exported_weights, before):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(c, b.numpy())


def test_patch_artifact_is_small_and_holds_only_task_variables(exported, tmp_path):
    from peterrec.trainer.task_model import build_task_model

    _, _, export_dir = exported
    backbone, _, vocabulary = artifacts.load_backbone(export_dir)
    model = build_task_model(backbone, _task("gender"))
    path = artifacts.save_patch_artifact(model, _metadata(model, backbone, vocabulary), str(tmp_path / "gender"))
    metadata = artifacts.read_patch_metadata(path)
    stored = sum(int(np.prod(v["shape"])) for v in metadata.variables)
    assert stored == sum(int(np.prod(w.shape)) for w in model.task_variables())
    assert stored < 0.2 * sum(int(np.prod(w.shape)) for w in backbone.weights)
    patch_bytes = artifacts.directory_size(path)
    backbone_bytes = artifacts.directory_size(export_dir)
    assert patch_bytes < backbone_bytes / 3, (patch_bytes, backbone_bytes)


def test_loading_onto_another_backbone_fails_clearly(exported, tmp_path):
    from peterrec.trainer.task_model import build_task_model

    _, _, export_dir = exported
    backbone, _, vocabulary = artifacts.load_backbone(export_dir)
    model = build_task_model(backbone, _task("gender"))
    path = artifacts.save_patch_artifact(model, _metadata(model, backbone, vocabulary), str(tmp_path / "gender"))
    # Same vocabulary, other weights (another pretraining run).
    other = _backbone(vocabulary, seed=7)
    with pytest.raises(artifacts.BackboneMismatchError, match="trained on backbone"):
        artifacts.load_patch_artifact(path, other, vocabulary)
    # Same weights shape, other vocabulary.
    renamed = _vocabulary(prefix="other")
    with pytest.raises(artifacts.BackboneMismatchError, match="fine-tune the task again"):
        artifacts.load_patch_artifact(path, backbone, renamed)


def test_metadata_round_trip_and_rejects(exported, tmp_path):
    _, vocabulary, _ = exported
    label_vocabulary = Vocabulary.from_counts("label", {"f": 3, "m": 5})
    metadata = artifacts.PatchMetadata(task_name="gender", kind="classification", strategy="fine-cls",
                                       backbone_fingerprint="abc", task_config={"name": "gender"},
                                       label_vocabulary=label_vocabulary.to_json_dict(),
                                       trainable_params=10, fine_all_params=1000)
    again = artifacts.PatchMetadata.from_dict(json.loads(json.dumps(metadata.to_dict())))
    assert again == metadata
    assert again.vocabulary() == label_vocabulary
    assert again.trainable_percent == pytest.approx(1.0)
    with pytest.raises(artifacts.ArtifactError, match="format"):
        artifacts.PatchMetadata.from_dict({**metadata.to_dict(), "format_version": 99})
    older = {k: v for k, v in metadata.to_dict().items() if k != "format_version"}  # written before versions 2
    with pytest.raises(artifacts.ArtifactError, match="fine-tune the task again"):
        artifacts.PatchMetadata.from_dict(older)
    with pytest.raises(artifacts.ArtifactError, match="unknown keys"):
        artifacts.PatchMetadata.from_dict({**metadata.to_dict(), "colour": "red"})
    with pytest.raises(artifacts.ArtifactError, match="does not exist"):
        artifacts.read_patch_metadata(str(tmp_path / "missing"))
    assert dataclasses.replace(metadata, metrics={"a": 1.0}).metrics == {"a": 1.0}


def test_a_stored_adapter_field_the_strategy_replaced_reads_back_as_trained():
    """Artifacts written before adapter fields were checked stored the user's placement even where
    the strategy used its own (here serial beside peterrec-parallel): the strategy's is read. A
    retired field (num_sampled) is dropped."""
    stored = {"name": "age", "strategy": "peterrec-parallel", "num_outputs": 5, "num_sampled": 100,
              "adapter": {"kind": "patch", "placement": "serial", "bottleneck": 4}}
    metadata = artifacts.PatchMetadata(task_name="age", kind="classification", strategy="peterrec-parallel",
                                       backbone_fingerprint="abc", task_config=stored)
    config = artifacts.trained_task_config(metadata)
    assert (config.adapter.placement, config.adapter.bottleneck) == ("parallel", 4)
    assert config.effective_adapter().placement == "parallel"
    from peterrec.trainer.config import TaskConfig

    with pytest.raises(ValueError, match="unknown key"):
        TaskConfig.from_dict(stored)          # as a new config, the retired field is refused
    current = {key: value for key, value in stored.items() if key != "num_sampled"}
    with pytest.raises(ValueError, match="adapter.placement is 'serial'"):
        TaskConfig.from_dict(current)         # and so is the contradiction
