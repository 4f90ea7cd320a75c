"""The trainer's two artifacts: the backbone export and the patch artifact (docs/architecture.md contracts 3, 4).

Backbone export (``export_backbone`` / ``load_backbone``), a folder::

    saved_model.pb, variables/     SavedModel; signature ``serving_default``:
                                   item_ids int32 [B, T] (left-padded) -> hidden_states [B, T, d]
    assets/vocabulary.json         the item vocabulary (contract 2)
    backbone_config.json           {"format_version", "backbone_config", "vocabulary_fingerprint",
                                    "fingerprint", "variables": [[shape], ...]}

The SavedModel's root holds the backbone's variables as the list ``backbone_variables`` (in
``backbone.weights`` order), so loading reads them straight from the variables checkpoint into a
backbone rebuilt from ``backbone_config`` (bit-identical), without tracing Keras code.

The backbone **fingerprint** identifies the exact pretrained function: a SHA-256 over the item
vocabulary's fingerprint, the backbone config and every weight's bytes. Patch artifacts record
it, and loading a patch onto a backbone with another fingerprint fails.

Patch artifact (``save_patch_artifact`` / ``load_patch_artifact``), a folder::

    metadata.json                  PatchMetadata (task, kind, strategy, backbone fingerprint,
                                   task config, label/target vocabulary, metrics, sizes)
    variables/task-*.{index,data}  a tf.train.Checkpoint of ONLY the task's layers
                                   (``TaskModel.task_layers()``: patches, LN2 copies, [TCL],
                                   head; the item table of peterrec+items; the trained
                                   backbone layers of fine-all / fine-last;
                                   and for peter-zero the untrained backbone it runs on)

Several patch artifacts load onto one backbone instance: each becomes its own TaskModel that
shares the backbone and keeps its own patches.
"""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from peterrec.components.vocabulary import Vocabulary, VocabularyError

FORMAT_VERSION = 1
# Patch artifacts: 2 since model patches and IAK adapters work in units of their input's scale
# (trainer.patches); a format-1 patch's weights mean something else under that formula.
PATCH_FORMAT_VERSION = 2
BACKBONE_CONFIG_FILE = "backbone_config.json"
PATCH_METADATA_FILE = "metadata.json"
PATCH_VARIABLES_DIR = "variables"
PATCH_CHECKPOINT_PREFIX = "task"
SERVING_SIGNATURE = "serving_default"
VARIABLES_ATTRIBUTE = "backbone_variables"
# Strategies whose artifact must also carry backbone weights that differ from the shared ones.
OWN_BACKBONE_STRATEGIES = ("fine-all", "fine-last", "peter-zero")
# TaskConfig fields that older artifacts store and that no longer exist: num_sampled (the
# unigram sampler's negatives; sampled cold-start training is in-batch now).
RETIRED_TASK_FIELDS = ("num_sampled",)


class ArtifactError(ValueError):
    """An artifact is missing, malformed, or does not fit the model it is loaded onto."""


class BackboneMismatchError(ArtifactError):
    """A patch artifact was trained on another backbone (its fingerprint differs)."""


# ----------------------------------------------------------------------------------- helpers
def _write_json(path: str, data: Dict[str, Any]) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)


def _read_json(path: str, what: str) -> Dict[str, Any]:
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        raise ArtifactError(f"{what}: {path} does not exist")
    with tf.io.gfile.GFile(path, "r") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as error:
            raise ArtifactError(f"{what}: {path} is not valid JSON ({error})") from error


def directory_size(path: str) -> int:
    """Total bytes of the files under a folder (an artifact's size on disk)."""
    import tensorflow as tf

    total = 0
    for folder, _, files in tf.io.gfile.walk(path):
        for name in files:
            total += tf.io.gfile.stat(os.path.join(folder, name)).length
    return total


def _replace_directory(staging: str, target: str) -> None:
    """Moves a finished staging folder to ``target``, replacing what was there."""
    import tensorflow as tf

    if tf.io.gfile.exists(target):
        tf.io.gfile.rmtree(target)
    parent = os.path.dirname(os.path.abspath(target)) if "://" not in target else os.path.dirname(target)
    tf.io.gfile.makedirs(parent)
    tf.io.gfile.rename(staging, target, overwrite=False)


def _staging_dir(target: str) -> str:
    parent = os.path.dirname(os.path.abspath(target))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.normpath(target))}.", dir=parent)


# ----------------------------------------------------------------------------------- backbone
def backbone_fingerprint(backbone, vocabulary_fingerprint: str) -> str:
    """SHA-256 over the vocabulary fingerprint, the backbone config and all weight bytes."""
    import numpy as np

    backbone.ensure_built()
    digest = hashlib.sha256()
    digest.update(vocabulary_fingerprint.encode("utf-8"))
    digest.update(json.dumps(backbone.backbone_config.to_dict(), sort_keys=True).encode("utf-8"))
    for weight in backbone.weights:
        value = np.ascontiguousarray(weight.numpy())
        digest.update(str((value.dtype.str, value.shape)).encode("utf-8"))
        digest.update(value.tobytes())
    return digest.hexdigest()


class _BackboneExport:
    """Builds the (non-Keras) SavedModel root: the variables list, the signature, the asset."""

    @staticmethod
    def make_root(backbone, vocabulary_file: str):
        import tensorflow as tf

        root = tf.Module()
        root.backbone_variables = list(backbone.weights)
        root.vocabulary = tf.saved_model.Asset(vocabulary_file)
        # autograph=False: tracing Keras internals through autograph costs seconds for nothing.
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="item_ids")], autograph=False)
        def hidden_states(item_ids):
            return {"hidden_states": backbone(item_ids, training=False)}

        root.hidden_states = hidden_states
        return root


def export_backbone(backbone, backbone_config, vocabulary: Vocabulary, export_dir: str) -> str:
    """Writes the backbone export (contract 3) to ``export_dir`` (replacing it); returns the path.

    Raises ArtifactError if the config or the vocabulary do not fit the backbone.
    """
    import tensorflow as tf

    backbone.ensure_built()
    config = backbone_config.to_dict() if hasattr(backbone_config, "to_dict") else dict(backbone_config)
    if config != backbone.backbone_config.to_dict():
        raise ArtifactError(f"backbone_config {config} differs from the backbone's own "
                            f"{backbone.backbone_config.to_dict()}")
    if len(vocabulary) != backbone.vocab_size:
        raise ArtifactError(f"the vocabulary has {len(vocabulary)} ids but the backbone was built for "
                            f"{backbone.vocab_size}: they belong to different runs")
    if vocabulary.kind != "item":
        raise ArtifactError(f"a backbone needs an item vocabulary, got a {vocabulary.kind} vocabulary")
    staging = _staging_dir(export_dir)
    try:
        asset_source = tempfile.mkdtemp(prefix="peterrec-vocab-")
        try:
            vocabulary_file = vocabulary.save(os.path.join(asset_source, "vocabulary.json"))
            root = _BackboneExport.make_root(backbone, vocabulary_file)
            tf.saved_model.save(root, staging, signatures={SERVING_SIGNATURE: root.hidden_states})
        finally:
            shutil.rmtree(asset_source, ignore_errors=True)
        _write_json(os.path.join(staging, BACKBONE_CONFIG_FILE), {
            "format_version": FORMAT_VERSION,
            "backbone_config": config,
            "vocabulary_fingerprint": vocabulary.fingerprint,
            "fingerprint": backbone_fingerprint(backbone, vocabulary.fingerprint),
            "variables": [list(map(int, w.shape)) for w in backbone.weights],
            "signature": {"name": SERVING_SIGNATURE, "inputs": {"item_ids": "int32 [batch, time]"},
                          "outputs": {"hidden_states": "float32 [batch, time, embedding_dim]"}},
        })
        _replace_directory(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return export_dir


def read_backbone_metadata(export_dir: str) -> Dict[str, Any]:
    """Returns the backbone export's ``backbone_config.json`` (cheap: no TensorFlow model)."""
    metadata = _read_json(os.path.join(export_dir, BACKBONE_CONFIG_FILE), "backbone export")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{export_dir}: backbone export format {metadata.get('format_version')}, "
                            f"this code reads {FORMAT_VERSION}")
    return metadata


def load_backbone(export_dir: str, trainable: bool = False):
    """Loads a backbone export -> (NextItNetBackbone, BackboneConfig, Vocabulary).

    The backbone is rebuilt from its config and gets the exported weights bit for bit (the
    fingerprint is recomputed and checked); ``trainable=False`` freezes it.
    """
    import tensorflow as tf

    from peterrec.trainer.backbone import NextItNetBackbone
    from peterrec.trainer.config import BackboneConfig

    metadata = read_backbone_metadata(export_dir)
    config = BackboneConfig.from_dict(metadata["backbone_config"])
    vocabulary_path = os.path.join(export_dir, "assets", "vocabulary.json")
    try:
        vocabulary = Vocabulary.load(vocabulary_path, expected_fingerprint=metadata["vocabulary_fingerprint"])
    except VocabularyError as error:
        raise ArtifactError(f"backbone export {export_dir}: {error}") from error
    backbone = NextItNetBackbone.from_backbone_config(config).ensure_built()
    weights = backbone.weights
    if [list(map(int, w.shape)) for w in weights] != metadata["variables"]:
        raise ArtifactError(f"backbone export {export_dir}: its variables {metadata['variables']} do not match "
                            "the backbone this code builds from its config (exported by another version?)")
    reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
    for index, weight in enumerate(weights):
        key = f"{VARIABLES_ATTRIBUTE}/{index}/.ATTRIBUTES/VARIABLE_VALUE"
        if not reader.has_tensor(key):
            raise ArtifactError(f"backbone export {export_dir}: variable {index} is missing ({key})")
        weight.assign(reader.get_tensor(key))
    if backbone_fingerprint(backbone, vocabulary.fingerprint) != metadata["fingerprint"]:
        raise ArtifactError(f"backbone export {export_dir}: the restored weights do not match the recorded "
                            "fingerprint (the export was modified or is corrupt)")
    backbone.trainable = bool(trainable)
    return backbone, config, vocabulary


# ----------------------------------------------------------------------------------- patches
@dataclasses.dataclass
class PatchMetadata:
    """What a patch artifact says about itself (``metadata.json``).

    task_name / kind / strategy: the task; task_config: ``TaskConfig.to_dict()``.
    backbone_fingerprint: the backbone the task was trained on (``backbone_fingerprint``).
    label_vocabulary / target_vocabulary: ``Vocabulary.to_json_dict()`` of the task's classes
    or target items (or None). metrics: evaluation at export. trainable_params /
    fine_all_params: the PeterRec parameter count and its fine-all reference.
    """

    task_name: str
    kind: str
    strategy: str
    backbone_fingerprint: str
    task_config: Dict[str, Any]
    label_vocabulary: Optional[Dict[str, Any]] = None
    target_vocabulary: Optional[Dict[str, Any]] = None
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    trainable_params: int = 0
    fine_all_params: int = 0
    item_vocabulary_fingerprint: str = ""
    backbone_config: Dict[str, Any] = dataclasses.field(default_factory=dict)
    variables: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    format_version: int = PATCH_FORMAT_VERSION

    @property
    def trainable_percent(self) -> float:
        """trainable_params as a percentage of fine_all_params."""
        return 100.0 * self.trainable_params / max(1, self.fine_all_params)

    def vocabulary(self) -> Optional[Vocabulary]:
        """The task's label (classification) or target (cold-start) vocabulary, if recorded."""
        data = self.label_vocabulary if self.kind == "classification" else self.target_vocabulary
        return None if data is None else Vocabulary.from_json_dict(data, source=f"patch {self.task_name}")

    def to_dict(self) -> Dict[str, Any]:
        """JSON-friendly dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "PatchMetadata":
        """Inverse of ``to_dict``; rejects other format versions and unknown keys."""
        version = data.get("format_version", 1)
        if version != PATCH_FORMAT_VERSION:
            raise ArtifactError(f"patch artifact format {version}, this code reads {PATCH_FORMAT_VERSION}"
                                + (": format 1 patches were trained with the earlier, scale-free adapter formula; "
                                   "fine-tune the task again" if version == 1 else ""))
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ArtifactError(f"patch metadata has unknown keys {unknown}")
        return cls(**data)


def task_trackables(task_model) -> Dict[str, Any]:
    """What a patch artifact (and a fine-tuning checkpoint) stores: the task's layers, plus the
    untrained backbone a peter-zero task runs on (it cannot be rebuilt from the shared one)."""
    layers = {"task_layers": list(task_model.task_layers())}
    if task_model.config.strategy == "peter-zero":
        layers["untrained_backbone"] = task_model.backbone
    return layers


def _variable_manifest(task_model) -> List[Dict[str, Any]]:
    """Name and shape of every variable the artifact stores (for people reading metadata.json)."""
    seen, manifest = set(), []
    for item in task_trackables(task_model).values():
        for layer in item if isinstance(item, list) else [item]:
            for weight in layer.weights:
                if id(weight) not in seen:
                    seen.add(id(weight))
                    manifest.append({"name": weight.name, "shape": list(map(int, weight.shape))})
    return manifest


def save_patch_artifact(task_model, metadata: PatchMetadata, artifact_dir: str) -> str:
    """Writes ONLY the task's variables plus ``metadata.json`` to ``artifact_dir``; returns it."""
    import tensorflow as tf

    if metadata.task_name != task_model.config.name or metadata.strategy != task_model.config.strategy:
        raise ArtifactError(f"metadata (task {metadata.task_name!r}, {metadata.strategy}) does not describe the "
                            f"model (task {task_model.config.name!r}, {task_model.config.strategy})")
    # The adapter fields as trained (the strategy's values written out), so the artifact
    # describes itself whatever later code says a strategy implies.
    trained = dataclasses.replace(task_model.config, adapter=task_model.config.effective_adapter())
    metadata = dataclasses.replace(metadata, task_config=trained.to_dict(), variables=_variable_manifest(task_model))
    staging = _staging_dir(artifact_dir)
    try:
        checkpoint = tf.train.Checkpoint(**task_trackables(task_model))
        checkpoint.write(os.path.join(staging, PATCH_VARIABLES_DIR, PATCH_CHECKPOINT_PREFIX))
        _write_json(os.path.join(staging, PATCH_METADATA_FILE), metadata.to_dict())
        _replace_directory(staging, artifact_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return artifact_dir


def read_patch_metadata(artifact_dir: str) -> PatchMetadata:
    """Reads a patch artifact's metadata without loading any variables."""
    return PatchMetadata.from_dict(_read_json(os.path.join(artifact_dir, PATCH_METADATA_FILE), "patch artifact"))


def check_backbone(metadata: PatchMetadata, backbone, backbone_vocabulary: Vocabulary, source: str = "") -> None:
    """Raises BackboneMismatchError unless the backbone is the one the patch was trained on."""
    actual = backbone_fingerprint(backbone, backbone_vocabulary.fingerprint)
    if actual != metadata.backbone_fingerprint:
        raise BackboneMismatchError(
            f"patch artifact {source or metadata.task_name!r} was trained on backbone "
            f"{metadata.backbone_fingerprint[:16]}..., but this backbone is {actual[:16]}... "
            f"(vocabulary {backbone_vocabulary.fingerprint[:16]}...). Load the backbone export the task "
            "was fine-tuned from, or fine-tune the task again on this backbone.")


def trained_task_config(metadata: PatchMetadata):
    """The TaskConfig a patch artifact was trained with.

    Artifacts written before adapter fields were checked against the strategy may store an
    adapter kind or placement that the strategy then replaced; the strategy's values are what
    the patch was trained with, so they are the ones read back. Fields that only steered
    training and are gone (``RETIRED_TASK_FIELDS``) are dropped.
    """
    from peterrec.trainer.config import STRATEGY_ADAPTER_FIELDS, TaskConfig

    data = {key: value for key, value in metadata.task_config.items() if key not in RETIRED_TASK_FIELDS}
    data["adapter"] = {**data.get("adapter", {}), **STRATEGY_ADAPTER_FIELDS.get(data.get("strategy"), {})}
    return TaskConfig.from_dict(data)


def load_patch_artifact(artifact_dir: str, backbone, backbone_vocabulary: Vocabulary):
    """Loads a patch artifact onto ``backbone`` -> (TaskModel, PatchMetadata).

    The backbone instance is shared, never modified: adapter and fine-cls tasks run on it with
    their own patches; fine-all / fine-last tasks get a copy with their trained layers, and
    peter-zero gets its own untrained backbone back. Raises BackboneMismatchError when the
    backbone's fingerprint differs from the one the patch was trained on.
    """
    import tensorflow as tf

    from peterrec.trainer.strategies import fresh_backbone_like
    from peterrec.trainer.task_model import build_task_model

    metadata = read_patch_metadata(artifact_dir)
    check_backbone(metadata, backbone, backbone_vocabulary, source=artifact_dir)
    task_config = trained_task_config(metadata)
    base = fresh_backbone_like(backbone) if task_config.strategy == "peter-zero" else backbone
    trainable_before = backbone.trainable
    task_model = build_task_model(base, task_config)
    if task_config.strategy in ("fine-all", "fine-last"):
        backbone.trainable = trainable_before  # these strategies work on their own copy
    checkpoint = tf.train.Checkpoint(**task_trackables(task_model))
    status = checkpoint.read(os.path.join(artifact_dir, PATCH_VARIABLES_DIR, PATCH_CHECKPOINT_PREFIX))
    try:
        status.assert_consumed()
    except AssertionError as error:
        raise ArtifactError(f"patch artifact {artifact_dir} does not fit the task model built from its "
                            f"config: {error}") from error
    return task_model, metadata
