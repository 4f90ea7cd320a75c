"""Fine-tuning strategies by their paper names, applied BY STRUCTURE (never by variable names).

| strategy            | backbone                                 | task-owned, trained                      |
|---------------------|------------------------------------------|------------------------------------------|
| peterrec-serial     | shared, ``trainable=False``              | serial patches (+ LN2 copies), [TCL], head |
| peterrec+items      | shared, ``trainable=False``              | serial patches (+ LN2), [TCL], item table, head |
| peterrec-parallel   | shared, ``trainable=False``              | parallel patches (+ LN2 copies), [TCL], head |
| iak                 | shared, ``trainable=False``              | IAK adapters (+ LN2 copies), [TCL], head |
| peter-zero          | shared UNTRAINED backbone, frozen        | patches as peterrec-* (+ LN2), [TCL], head |
| fine-cls            | shared, ``trainable=False``              | [TCL], head                              |
| fine-last           | task-owned copy; only the last 1-2 convs | those convs, [TCL], head                 |
| fine-all            | task-owned copy, all trainable           | the whole copy, [TCL], head              |

The shared backbone is never modified by a task: fine-all and fine-last train a copy (made with
``NextItNetBackbone.clone``), and the "second LayerNorm" option (docs/method.md section 3) trains a
task-owned copy of each block's LN2 held in the task's BlockPatch. The pretraining output layer
(``item_scorer``) is not part of any task and is never trained by one.

peterrec+items (``peterrec.trainer.item_knowledge``) is peterrec-serial plus a task-owned,
zero-initialised item table ``[vocab_size, item_rank]`` whose rows are pooled over the user's
items and read beside the patched read-out: per-item evidence the frozen backbone does not keep.
The plan gives it the serial patches; ``TaskModel`` builds the table from the task config (as it
builds the read-out and the head), and it is one of the task's layers (saved, served, counted).
"""

import dataclasses
from typing import List, Optional

import tf_keras as keras

from peterrec.trainer.config import ADAPTER_STRATEGIES, STRATEGIES, TaskConfig
from peterrec.trainer.patches import PatchSet


@dataclasses.dataclass
class StrategyPlan:
    """What a strategy gives a task: the backbone it runs on, its patches (or None) and the
    backbone layers it trains and owns (saved in its artifact along with patches and head)."""

    backbone: "keras.Model"
    patches: Optional[PatchSet]
    owned_backbone_layers: List[keras.layers.Layer]


def freeze(layer: keras.layers.Layer) -> None:
    """Marks a layer (and so all its sub-layers) non-trainable."""
    layer.trainable = False


def last_conv_layers(backbone, count: int) -> List[keras.layers.Layer]:
    """The last ``count`` conv layers of the backbone, in order."""
    convs = [conv for block in backbone.blocks for conv in (block.conv1, block.conv2)]
    return convs[-count:]


def plan_strategy(backbone, task_config: TaskConfig) -> StrategyPlan:
    """Applies ``task_config.strategy`` to ``backbone`` (setting trainable flags) and returns the plan.

    Frozen strategies set ``backbone.trainable = False`` on the shared instance (all their task
    models share it). fine-all / fine-last get their own copy of the backbone.
    """
    strategy = task_config.strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    backbone.ensure_built()
    if strategy == "fine-all":
        copy = backbone.clone(name=f"{task_config.name}_backbone")
        copy.trainable = True
        freeze(copy.output_layer)
        return StrategyPlan(copy, None, [copy])
    if strategy == "fine-last":
        copy = backbone.clone(name=f"{task_config.name}_backbone")
        copy.trainable = True
        trained = last_conv_layers(copy, task_config.fine_last_convs)
        freeze(copy.embedding)
        freeze(copy.output_layer)
        for block in copy.blocks:
            for sub in (block.conv1, block.ln1, block.conv2, block.ln2):
                sub.trainable = any(sub is t for t in trained)
        return StrategyPlan(copy, None, list(trained))
    freeze(backbone)
    if strategy == "fine-cls":
        return StrategyPlan(backbone, None, [])
    assert strategy in ADAPTER_STRATEGIES
    patches = PatchSet.create(backbone, task_config.effective_adapter(), task_config.train_layer_norm,
                              name=f"{task_config.name}_patches")
    return StrategyPlan(backbone, patches, [])


def fresh_backbone_like(backbone, name: str = "untrained_backbone"):
    """A freshly initialised (untrained) backbone with the same config: peter-zero's backbone."""
    from peterrec.trainer.backbone import NextItNetBackbone

    fresh = NextItNetBackbone.from_backbone_config(backbone.backbone_config, name=name)
    return fresh.ensure_built()
