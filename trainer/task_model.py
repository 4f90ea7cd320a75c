"""TaskModel: backbone + (optional) patches + read-out + head, one per downstream task.

keras-hub's "Task" split: the backbone is shared and (for the PeterRec strategies) frozen; the
task owns only its patches, its [TCL] embedding, its head and optional LN2 copies, listed by
``task_layers()`` (exactly what a patch artifact saves). ``build_task_model`` applies the
strategy by structure (``peterrec.trainer.strategies``).

Several tasks on ONE backbone: build each TaskModel on the same backbone instance; each passes
its own PatchSet to ``backbone.encode``. ``MultiTaskModel`` bundles them and a call selects a
task by name.

Batches for ``fit``/``evaluate`` are dicts: ``item_ids`` [B, T] (left-padded) and ``label`` [B]
(classification) or ``target_item_ids`` [B, Tt] padded with 0 (cold start).
"""

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer import metrics as metrics_lib
from peterrec.trainer import objectives
from peterrec.trainer.config import TaskConfig
from peterrec.trainer.heads import ClassificationHead, ColdStartHead
from peterrec.trainer.item_knowledge import item_knowledge_for
from peterrec.trainer.readout import UserReadout
from peterrec.trainer.strategies import plan_strategy

# Our methods have no data-dependent Python control flow: skipping AutoGraph's source
# conversion makes tracing (tf.function, model.fit) faster. Layer ``call`` methods stay
# undecorated (Keras inspects their signature); they run unconverted when called from a
# decorated method such as ``train_step``.
_no_autograph = tf.autograph.experimental.do_not_convert

TARGET_NUM_RESERVED = len(ids.TARGET_RESERVED_TOKENS)


def _count(weights) -> int:
    seen, total = set(), 0
    for w in weights:
        key = id(w)
        if key not in seen:
            seen.add(key)
            total += int(np.prod(w.shape))
    return total


class TaskModel(keras.Model):
    """One task: ``call({"item_ids": ids})`` -> logits [B, num_outputs].

    The [TCL] token (readouts "tcl" and "tcl+mean") is appended after the last item of each
    left-padded sequence; readout "mean" appends nothing.
    """

    def __init__(self, backbone, config: TaskConfig, patches=None, owned_backbone_layers: Sequence = (),
                 target_counts: Optional[Sequence[float]] = None, **kwargs):
        kwargs.setdefault("name", f"task_{config.name}")
        super().__init__(**kwargs)
        self.config = config.validate()
        self.backbone = backbone
        self.patches = patches
        self._owned_backbone_layers = list(owned_backbone_layers)
        self.target_counts = None if target_counts is None else [float(c) for c in target_counts]
        d = backbone.embedding_dim
        self.readout = UserReadout(config.readout, d, normalize=config.readout_norm, name="readout")
        # peterrec+items: the task's own item table, read beside the read-out (None otherwise).
        self.item_knowledge = item_knowledge_for(config, backbone.vocab_size)
        if config.kind == "classification":
            self.head = ClassificationHead(config.num_outputs, config.head_hidden_units, name="head")
        else:
            self.head = ColdStartHead(config.num_outputs, TARGET_NUM_RESERVED, config.head_embedding_dim, name="head")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self._kl_tracker = keras.metrics.Mean(name="kl") if self._uses_iak else None
        if config.kind == "classification":
            self._eval_metrics = metrics_lib.classification_metrics(config.num_outputs)
        else:
            self._eval_metrics = metrics_lib.ranking_metrics(TARGET_NUM_RESERVED)

    @property
    def _uses_iak(self) -> bool:
        return self.patches is not None and self.patches.adapter_config.kind == "iak"

    # ------------------------------------------------------------------ forward
    @staticmethod
    def _item_ids(inputs):
        if isinstance(inputs, Mapping):
            inputs = inputs["item_ids"]
        return tf.convert_to_tensor(inputs)

    @_no_autograph
    def user_vector(self, inputs, training=None):
        """Left-padded item ids (or {"item_ids": ...}) -> user vectors [B, readout.output_dim]
        (+ item_rank with the task's item table, concatenated after the read-out)."""
        item_ids = self._item_ids(inputs)
        mask = tf.not_equal(item_ids, ids.PAD_ID)
        embeddings = self.backbone.embed(item_ids)
        embeddings, full_mask = self.readout.append_token(embeddings, mask)
        adapters = None if self.patches is None else self.patches.block_patches
        hidden = self.backbone.encode(embeddings, full_mask, adapters=adapters, training=training)
        user = self.readout(hidden, mask)
        if self.item_knowledge is None:
            return user
        return tf.concat([user, tf.cast(self.item_knowledge(item_ids), user.dtype)], axis=-1)

    def call(self, inputs, training=None):
        """Left-padded item ids (or {"item_ids": ...}) -> logits [B, num_outputs]."""
        return self.head(self.user_vector(inputs, training=training))

    def build_variables(self) -> "TaskModel":
        """Creates every variable with a dummy call (no training side effects); returns self."""
        self(tf.constant([[ids.PAD_ID, ids.NUM_RESERVED]], tf.int32), training=False)
        return self

    # ------------------------------------------------------------------ ownership and size
    def task_layers(self) -> List[keras.layers.Layer]:
        """The layers owned by the task (patches incl. LN2 copies, read-out/[TCL], head, for
        fine-all / fine-last the trained backbone layers, and the item table of peterrec+items):
        exactly what a patch artifact saves."""
        layers = [] if self.patches is None else [self.patches]
        layers = layers + [self.readout, self.head] + list(self._owned_backbone_layers)
        return layers if self.item_knowledge is None else layers + [self.item_knowledge]

    def task_variables(self) -> List[tf.Variable]:
        """All variables of ``task_layers()`` (trainable or not, e.g. IAK step counters)."""
        seen, out = set(), []
        for layer in self.task_layers():
            for w in layer.weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    out.append(w)
        return out

    def trainable_parameter_count(self) -> int:
        """Number of trainable scalars of this task model."""
        return _count(self.trainable_weights)

    def fine_all_parameter_count(self) -> int:
        """Trainable scalars the same task would have under fine-all: the backbone's embedding and
        blocks, the read-out and the head."""
        return (self.backbone.encoder_parameter_count() + _count(self.readout.weights) + _count(self.head.weights))

    def trainable_percentage(self) -> float:
        """trainable_parameter_count() as a percentage of fine_all_parameter_count()."""
        return 100.0 * self.trainable_parameter_count() / max(1, self.fine_all_parameter_count())

    def parameter_report(self) -> Dict[str, float]:
        """{"trainable_params", "fine_all_params", "trainable_percent"} for logs and metadata."""
        return {"trainable_params": self.trainable_parameter_count(),
                "fine_all_params": self.fine_all_parameter_count(),
                "trainable_percent": self.trainable_percentage()}

    # ------------------------------------------------------------------ training
    @_no_autograph
    def compute_task_loss(self, batch, training=None):
        """(task loss without regularisers, logits or None) for a batch dict."""
        if self.config.kind == "classification":
            logits = self(batch, training=training)
            return objectives.classification_loss(logits, batch["label"]), logits
        targets = batch["target_item_ids"]
        if training and self.config.softmax == "sampled":
            user = self.user_vector(batch, training=training)
            return self.head.sampled_loss(user, targets, self.target_counts), None
        logits = self(batch, training=training)
        return objectives.cold_start_loss(logits, targets, TARGET_NUM_RESERVED), logits

    @_no_autograph
    def loss_weight(self, batch):
        """What the batch's task loss is a mean over, as a float scalar: the number of examples
        (classification) or of counted (user, target) pairs, i.e. targets that are not padding
        (cold start). The loss tracker weights each batch by it, so a short last batch counts
        for its size and the epoch's loss is the mean over examples, not over batches."""
        if self.config.kind == "classification":
            return tf.cast(tf.size(batch["label"]), tf.float32)
        targets = tf.cast(batch["target_item_ids"], tf.int32)
        return tf.reduce_sum(tf.cast(targets >= TARGET_NUM_RESERVED, tf.float32))

    def compile(self, *args, **kwargs):
        """As keras ``compile``; also creates the optimizer's slots so the first step traces once."""
        super().compile(*args, **kwargs)
        objectives.prebuild_optimizer(self)

    @property
    def metrics(self):
        trackers = [self.loss_tracker]
        if self._kl_tracker is not None:
            trackers.append(self._kl_tracker)
        return trackers + list(self._eval_metrics)

    @_no_autograph
    def train_step(self, data):
        with tf.GradientTape() as tape:
            task_loss, logits = self.compute_task_loss(data, training=True)
            regular = tf.add_n(self.losses) if self.losses else tf.constant(0.0)
            loss = task_loss + regular
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        weight = self.loss_weight(data)
        self.loss_tracker.update_state(task_loss, sample_weight=weight)
        results = {"loss": self.loss_tracker.result()}
        if self._kl_tracker is not None:
            self._kl_tracker.update_state(regular, sample_weight=weight)
            results["kl"] = self._kl_tracker.result()
        if self.config.kind == "classification":
            accuracy = self._eval_metrics[0]
            accuracy.update_state(data["label"], logits)
            results["accuracy"] = accuracy.result()
        return results

    @_no_autograph
    def test_step(self, data):
        task_loss, logits = self.compute_task_loss(data, training=False)
        self.loss_tracker.update_state(task_loss, sample_weight=self.loss_weight(data))
        target = data["label"] if self.config.kind == "classification" else data["target_item_ids"]
        for metric in self._eval_metrics:
            metric.update_state(target, logits)
        return {m.name: m.result() for m in [self.loss_tracker] + list(self._eval_metrics)}

    def get_config(self):
        return {"name": self.name, "task_config": self.config.to_dict()}


def build_task_model(backbone, task_config: TaskConfig, target_counts: Optional[Sequence[float]] = None,
                     name: Optional[str] = None) -> TaskModel:
    """A built TaskModel for ``task_config`` on ``backbone``, with the strategy applied by structure.

    Frozen strategies (peterrec-*, iak, fine-cls, peter-zero) set ``backbone.trainable = False``
    on the given, shared instance. fine-all / fine-last train a task-owned copy of it.
    peter-zero expects an untrained backbone (``strategies.fresh_backbone_like``).
    ``target_counts`` (cold start, sampled softmax): one count per target id.
    """
    task_config.validate()
    plan = plan_strategy(backbone, task_config)
    model = TaskModel(plan.backbone, task_config, patches=plan.patches,
                      owned_backbone_layers=plan.owned_backbone_layers, target_counts=target_counts,
                      **({"name": name} if name else {}))
    return model.build_variables()


class MultiTaskModel(keras.Model):
    """Several TaskModels on one shared backbone; ``call(inputs, task=name)`` runs one task.

    All adapter/fine-cls tasks must share the same backbone instance (checked); fine-all and
    fine-last tasks carry their own copy and are allowed as they are.
    """

    def __init__(self, task_models: Mapping[str, TaskModel], **kwargs):
        super().__init__(**kwargs)
        if not task_models:
            raise ValueError("MultiTaskModel needs at least one task model")
        self.task_models = dict(task_models)
        shared = {id(m.backbone) for m in self.task_models.values()
                  if m.config.strategy not in ("fine-all", "fine-last")}
        if len(shared) > 1:
            raise ValueError("the frozen-backbone tasks of a MultiTaskModel must share one backbone instance")

    @property
    def task_names(self) -> List[str]:
        return sorted(self.task_models)

    def call(self, inputs, task: Optional[str] = None, training=None):
        """Logits of the named task (required when there is more than one)."""
        if task is None:
            if len(self.task_models) != 1:
                raise ValueError(f"name the task: one of {self.task_names}")
            task = self.task_names[0]
        if task not in self.task_models:
            raise KeyError(f"unknown task {task!r}; known: {self.task_names}")
        return self.task_models[task](inputs, training=training)
