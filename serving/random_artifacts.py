"""Backbone exports and patch artifacts with random weights, for tests and benchmarks.

Serving figures (sizes, memory, latency) and the assembly's equivalence checks do not need
trained weights, only the real artifact formats and model structure. ``write_random_artifacts``
builds a NextItNet backbone and task models with the real ``peterrec.trainer`` classes, moves
every weight away from its initial value (so a patch is not the identity and no fresh
initialisation reproduces the backbone), and writes them with ``peterrec.trainer.artifacts``
exactly as fine-tuning does::

    made = write_random_artifacts(root, [TaskSpec("genre", "classification", num_classes=4),
                                         TaskSpec("shop", "cold_start", num_targets=50)])
    made.backbone_dir, made.task_dirs["genre"], made.task_models["genre"]
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from peterrec.components.vocabulary import Vocabulary


@dataclasses.dataclass
class TaskSpec:
    """One random-weight task: its name, kind, strategy, read-out and output vocabulary size."""

    name: str
    kind: str = "classification"
    strategy: str = "peterrec-serial"
    readout: str = "tcl"
    num_classes: int = 4
    num_targets: int = 20  # real target items (the target vocabulary adds its padding id)
    bottleneck: int = 16
    item_rank: int = 8  # peterrec+items: rank of the task's item table


@dataclasses.dataclass
class RandomArtifacts:
    """What ``write_random_artifacts`` wrote, and the in-memory models it wrote them from."""

    backbone_dir: str
    task_dirs: Dict[str, str]
    backbone: object
    vocabulary: Vocabulary
    task_models: Dict[str, object]
    metadata: Dict[str, object]


def item_vocabulary(num_items: int, prefix: str = "item") -> Vocabulary:
    """An item vocabulary of ``num_items`` real items named ``<prefix><n>`` (most frequent first)."""
    return Vocabulary.from_counts("item", {f"{prefix}{n}": num_items * 10 - n for n in range(num_items)})


def perturb(variables, seed: int, scale: float = 0.1) -> None:
    """Stands in for training: adds Gaussian noise to every float variable."""
    rng = np.random.default_rng(seed)
    for variable in variables:
        if variable.dtype.is_floating:
            noise = rng.normal(0.0, scale, variable.shape).astype(variable.dtype.as_numpy_dtype)
            variable.assign(variable.numpy() + noise)


def build_backbone(vocabulary: Vocabulary, embedding_dim: int = 16, dilations: Sequence[int] = (1, 2, 1, 2),
                   causal: bool = True, seed: int = 0):
    """A built NextItNetBackbone for the vocabulary, its weights randomly moved (untrained)."""
    from peterrec.trainer.backbone import NextItNetBackbone

    backbone = NextItNetBackbone(vocab_size=len(vocabulary), embedding_dim=embedding_dim,
                                 dilations=tuple(dilations), causal=causal, name="backbone").ensure_built()
    perturb(backbone.weights, seed)
    return backbone


def build_task(backbone, vocabulary: Vocabulary, spec: TaskSpec, seed: int = 0):
    """(TaskModel, PatchMetadata) of a random-weight task on ``backbone`` (task weights moved randomly)."""
    from peterrec.trainer import artifacts
    from peterrec.trainer.config import AdapterConfig, TaskConfig
    from peterrec.trainer.strategies import fresh_backbone_like
    from peterrec.trainer.task_model import build_task_model

    if spec.kind == "classification":
        outputs = Vocabulary.from_counts("label", {f"class{n}": 100 - n for n in range(spec.num_classes)})
    else:
        outputs = Vocabulary.from_counts("target", {f"{spec.name}_t{n}": 1000 - n for n in range(spec.num_targets)})
    config = TaskConfig(name=spec.name, kind=spec.kind, num_outputs=len(outputs), strategy=spec.strategy,
                        readout=spec.readout, adapter=AdapterConfig(bottleneck=spec.bottleneck),
                        item_rank=spec.item_rank)
    base = fresh_backbone_like(backbone) if spec.strategy == "peter-zero" else backbone
    model = build_task_model(base, config)
    perturb(model.task_variables(), seed)
    report = model.parameter_report()
    metadata = artifacts.PatchMetadata(
        task_name=spec.name, kind=spec.kind, strategy=spec.strategy,
        backbone_fingerprint=artifacts.backbone_fingerprint(backbone, vocabulary.fingerprint),
        task_config=config.to_dict(),
        label_vocabulary=outputs.to_json_dict() if spec.kind == "classification" else None,
        target_vocabulary=outputs.to_json_dict() if spec.kind == "cold_start" else None,
        metrics={"random_weights": 1.0}, trainable_params=int(report["trainable_params"]),
        fine_all_params=int(report["fine_all_params"]), item_vocabulary_fingerprint=vocabulary.fingerprint,
        backbone_config=backbone.backbone_config.to_dict())
    return model, metadata


def write_random_artifacts(root: str, specs: Sequence[TaskSpec], num_items: int = 40, embedding_dim: int = 16,
                              dilations: Sequence[int] = (1, 2, 1, 2), causal: bool = True, seed: int = 0,
                              log=None) -> RandomArtifacts:
    """Writes ``root/backbone`` (a backbone export) and ``root/patches/<task>`` (patch artifacts)."""
    import tensorflow as tf

    from peterrec.trainer import artifacts

    tf.keras.utils.set_random_seed(seed)
    vocabulary = item_vocabulary(num_items)
    backbone = build_backbone(vocabulary, embedding_dim, dilations, causal, seed)
    backbone_dir = artifacts.export_backbone(backbone, backbone.backbone_config, vocabulary,
                                             os.path.join(root, "backbone"))
    task_dirs, models, metadata = {}, {}, {}
    for index, spec in enumerate(specs):
        model, meta = build_task(backbone, vocabulary, spec, seed=seed * 1000 + index + 1)
        task_dirs[spec.name] = artifacts.save_patch_artifact(model, meta, os.path.join(root, "patches", spec.name))
        models[spec.name], metadata[spec.name] = model, meta
        if log is not None and (index + 1) % 10 == 0:
            log(f"  wrote {index + 1}/{len(specs)} patch artifacts")
    return RandomArtifacts(backbone_dir, task_dirs, backbone, vocabulary, models, metadata)


def random_item_rows(vocabulary: Vocabulary, num_rows: int, min_len: int = 1, max_len: int = 20,
                     seed: int = 0, unknown_rate: float = 0.0) -> List[List[str]]:
    """Rows of item-id strings (oldest first) drawn from the vocabulary; some unknown if asked."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_rows):
        length = int(rng.integers(min_len, max_len + 1))
        row = []
        for _ in range(length):
            if rng.random() < unknown_rate:
                row.append(f"unknown{int(rng.integers(1 << 30))}")
            else:
                row.append(vocabulary.tokens[int(rng.integers(len(vocabulary.tokens)))])
        rows.append(row)
    return rows


def left_padded_ids(vocabulary: Vocabulary, rows: Sequence[Sequence[str]], max_len: int,
                    width: Optional[int] = None) -> np.ndarray:
    """The trainer's input layout of string rows: ids LEFT-padded to ``width`` (default max_len),
    the most recent ``max_len`` items kept, unknown (and reserved) tokens -> UNK, "" skipped."""
    from peterrec.components import ids as reserved_ids

    width = max_len if width is None else width
    out = np.zeros((len(rows), width), np.int32)
    for index, row in enumerate(rows):
        ids = [reserved_ids.UNK_ID if item in vocabulary.reserved else vocabulary.lookup(item)
               for item in row if item != ""][-max_len:]
        if ids:
            out[index, width - len(ids):] = ids
    return out
