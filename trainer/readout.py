"""The user read-out of a task: how a [B, T, d] hidden sequence becomes one user vector.

- "tcl": a task-owned, trainable [TCL] embedding is appended at the END of the left-padded
  sequence (after the most recent item) and the hidden state at that last position is read.
  The [TCL] token never occurs in pretraining, so an id-based [TCL] row of the item table
  carries nothing learned (and in the original code it was the frozen padding row): here it is
  a parameter of the task (docs/method.md section 3). A causal network reads the whole history at
  the last position; putting [TCL] first would see nothing.
- "mean": the mean of the hidden states over the real (non-padding) item positions.
- "tcl+mean": both, concatenated ([B, 2d]).

With ``normalize`` each read part goes through its own task-owned LayerNorm. The residual
stream of a pretrained backbone grows along the blocks (hidden norms of 20-30 on ML-1M), so
a linear head on the raw vector starts with large, badly scaled logits; normalised, the
head trains at the learning rate of the patches (benchmarks/results/transfer_table.md).
"""

import tensorflow as tf
import tf_keras as keras

from peterrec.trainer.config import READOUTS

# Our methods have no data-dependent Python control flow: skipping AutoGraph's source
# conversion makes tracing (tf.function, model.fit) faster. Layer ``call`` methods stay
# undecorated (Keras inspects their signature); they run unconverted when called from a
# decorated method such as ``train_step``.
_no_autograph = tf.autograph.experimental.do_not_convert


class UserReadout(keras.layers.Layer):
    """Appends the task's [TCL] embedding (if the mode uses it) and reads the user vector."""

    def __init__(self, mode: str = "tcl", embedding_dim: int = 64, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        if mode not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {mode!r}")
        self.mode = mode
        self.embedding_dim = int(embedding_dim)
        self.normalize = bool(normalize)
        self.tcl_norm = self._norm("tcl_norm") if self.normalize and self.uses_tcl else None
        self.mean_norm = self._norm("mean_norm") if self.normalize and self.uses_mean else None

    @staticmethod
    def _norm(name):
        return keras.layers.LayerNormalization(epsilon=1e-6, name=name)

    @property
    def uses_tcl(self) -> bool:
        """True if a [TCL] token is appended and read."""
        return self.mode in ("tcl", "tcl+mean")

    @property
    def uses_mean(self) -> bool:
        """True if the mean over the real item positions is read."""
        return self.mode in ("mean", "tcl+mean")

    @property
    def output_dim(self) -> int:
        """Width of the user vector."""
        return 2 * self.embedding_dim if self.mode == "tcl+mean" else self.embedding_dim

    def build(self, input_shape=None):
        if self.uses_tcl:
            self.tcl_embedding = self.add_weight(
                name="tcl_embedding", shape=(self.embedding_dim,),
                initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        for norm in (self.tcl_norm, self.mean_norm):
            if norm is not None:
                norm.build(tf.TensorShape([None, self.embedding_dim]))
        super().build(input_shape)

    @_no_autograph
    def append_token(self, embeddings, mask):
        """[B, T, d] embeddings and [B, T] mask -> with the [TCL] position appended (if used)."""
        if not self.built:
            self.build()
        if not self.uses_tcl:
            return embeddings, mask
        batch = tf.shape(embeddings)[0]
        token = tf.cast(self.tcl_embedding, embeddings.dtype)
        token = tf.broadcast_to(token[tf.newaxis, tf.newaxis, :], [batch, 1, self.embedding_dim])
        mask = tf.cast(mask, tf.bool)
        return (tf.concat([embeddings, token], axis=1),
                tf.concat([mask, tf.ones([batch, 1], tf.bool)], axis=1))

    def call(self, hidden, item_mask):
        """hidden: [B, T(+1), d] from the backbone (the +1 is the appended [TCL] position);
        item_mask: [B, T], True at real item positions. Returns [B, output_dim]."""
        parts = []
        if self.uses_tcl:
            tcl = hidden[:, -1, :]
            parts.append(self.tcl_norm(tcl) if self.tcl_norm is not None else tcl)
            item_hidden = hidden[:, :-1, :]
        else:
            item_hidden = hidden
        if self.uses_mean:
            weights = tf.cast(item_mask, hidden.dtype)[..., tf.newaxis]
            total = tf.reduce_sum(item_hidden * weights, axis=1)
            mean = total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
            parts.append(self.mean_norm(mean) if self.mean_norm is not None else mean)
        return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode, embedding_dim=self.embedding_dim, normalize=self.normalize)
        return config
