"""Task-owned item knowledge: a low-rank per-item table a task reads beside the frozen backbone.

Why: a frozen next-item backbone keeps what predicts the NEXT item, not every per-item fact a
downstream task needs. On MovieLens-1M a logistic regression on the bag of a user's items
reaches gender/age/occupation accuracy 0.808/0.522/0.207 while the best patch strategy on a
64-wide frozen backbone reaches 0.743/0.354/0.181 (issue #10, item 6): the evidence "this user
has item X" is partly gone by the last hidden layer. Patches can only re-weight what the
backbone computes; this layer gives the task its own per-item evidence back.

``ItemKnowledge`` holds a task-owned table ``E`` of shape ``[vocab_size, rank]`` and reads it over
the REAL positions of the input sequence::

    pooling "mean":  u = sum_t m_t E[x_t] / max(1, sum_t m_t)
    pooling "sqrt":  u = sum_t m_t E[x_t] / sqrt(max(1, sum_t m_t))

where ``m_t`` is 1 at real items and 0 at padding, so the padding id contributes nothing
whatever its row holds. ``TaskModel`` concatenates ``u`` [B, rank] beside the patched
hidden-state read-out before the head; with a linear head this is a factorised logistic
regression on the user's bag of items (rank ``r`` per item instead of one weight per class)
added to the patched model's logits. ``E`` starts at ZERO: the task starts exactly at the
plain patched model (the head's weights on ``u`` make the table's gradient non-zero).

The strategy ``peterrec+items`` (``peterrec.trainer.strategies``) is PeterRec's serial patches
plus this table; the shared backbone stays frozen (``trainable=False``) and other tasks never
see the table. The table is one of ``TaskModel.task_layers()``, so it counts in
``parameter_report()``, is saved in the patch artifact and is served by the multi-task
SavedModel like any patch weight.

Size: ``vocab_size * rank`` scalars. For ML-1M (vocab 3,700 incl. reserved ids) with d = 64 and
the default backbone (4 blocks, conv dilations 1..128) and a 2-class head on the tcl+mean
read-out with LayerNorms, ``parameter_report()`` gives: fine-all 337,218 trainable scalars;
peterrec-serial (bottleneck 16) 18,114 = 5.37 %; peterrec+items with rank 8 adds the table's
29,600 (8.8 % of fine-all) and 16 head weights: 47,730 = 14.15 % (rank 4: 32,922 = 9.76 %;
rank 16: 77,346 = 22.93 %). ``tests/test_item_knowledge.py`` recomputes these numbers.
"""

import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer.config import ITEM_POOLINGS

# Our methods have no data-dependent Python control flow: skipping AutoGraph's source
# conversion makes tracing (tf.function, model.fit) faster. Layer ``call`` methods stay
# undecorated (Keras inspects their signature); they run unconverted when called from a
# decorated method such as ``train_step``.
_no_autograph = tf.autograph.experimental.do_not_convert


class ItemKnowledge(keras.layers.Layer):
    """A task-owned ``[vocab_size, rank]`` item table read out over the real input positions.

    ``call(item_ids)`` with left-padded item ids [B, T] -> [B, rank] (see the module docstring
    for the pooling). ``initial_stddev`` 0 (the default) starts the table at zero.
    """

    def __init__(self, vocab_size: int, rank: int = 8, pooling: str = "mean", initial_stddev: float = 0.0,
                 **kwargs):
        super().__init__(**kwargs)
        if int(vocab_size) <= ids.PAD_ID:
            raise ValueError(f"vocab_size must be positive, got {vocab_size}")
        if int(rank) < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        if pooling not in ITEM_POOLINGS:
            raise ValueError(f"pooling must be one of {ITEM_POOLINGS}, got {pooling!r}")
        self.vocab_size = int(vocab_size)
        self.rank = int(rank)
        self.pooling = pooling
        self.initial_stddev = float(initial_stddev)

    @property
    def output_dim(self) -> int:
        """Width of the item-evidence vector (the rank)."""
        return self.rank

    def build(self, input_shape=None):
        initializer = (keras.initializers.TruncatedNormal(stddev=self.initial_stddev) if self.initial_stddev > 0
                       else "zeros")
        self.table = self.add_weight(name="table", shape=(self.vocab_size, self.rank), initializer=initializer)
        super().build(input_shape)

    def call(self, item_ids):
        """item_ids [B, T] (int, ``PAD_ID`` = padding) -> [B, rank]."""
        item_ids = tf.convert_to_tensor(item_ids)
        rows = tf.gather(self.table, item_ids)  # [B, T, r]
        weights = tf.cast(tf.not_equal(item_ids, ids.PAD_ID), rows.dtype)[..., tf.newaxis]
        total = tf.reduce_sum(rows * weights, axis=1)
        count = tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        return total / (count if self.pooling == "mean" else tf.sqrt(count))

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, rank=self.rank, pooling=self.pooling,
                      initial_stddev=self.initial_stddev)
        return config


def item_knowledge_for(task_config, vocab_size: int):
    """The task's ItemKnowledge layer (named ``item_knowledge``, built), or None when its strategy
    has no item table (``TaskConfig.uses_item_knowledge``)."""
    if not task_config.uses_item_knowledge:
        return None
    layer = ItemKnowledge(vocab_size, task_config.item_rank, task_config.item_pooling, name="item_knowledge")
    layer.build()
    return layer
