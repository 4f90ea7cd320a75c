"""The NextItNet backbone (causal dilated CNN) and its non-causal GRec-encoder variant.

docs/method.md section 2. A residual block with conv dilations (r1, r2) computes::

    h = ReLU(LN1(Conv_{k,r1}(x)));  h = ReLU(LN2(Conv_{k,r2}(h)));  out = x + h

Inputs are LEFT-padded with ``PAD_ID``. Padding never influences a real position: hidden
states are zeroed at padding positions before every conv, so a real position sees exactly the
zeros it would see from the conv's own padding, whatever the amount of left padding. Causal
convs pad ``(k-1)*r`` zeros on the left (no look-ahead); non-causal convs pad ``(k-1)*r/2`` on
both sides. Padding is explicit (``tf.pad``) followed by a "valid" ``Conv1D``.

The backbone knows nothing of adapters. Each block exposes two insertion points, one after
each dilated conv, through the small ``BlockAdapter`` interface below: a task passes one object
per block (``peterrec.trainer.patches`` builds them: model patches, serial or parallel, and IAK
adapters) to ``encode``, and the block calls it at those points. The task's objects hold its
weights, so several tasks share one frozen backbone instance.
"""

from typing import Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer.config import DEFAULT_DILATIONS, BackboneConfig

# Our methods have no data-dependent Python control flow: skipping AutoGraph's source
# conversion makes tracing (tf.function, model.fit) faster. Layer ``call`` methods stay
# undecorated (Keras inspects their signature); they run unconverted when called from a
# decorated method such as ``train_step``.
_no_autograph = tf.autograph.experimental.do_not_convert


def _truncated_normal():
    """The item-embedding / conv initialiser: truncated normal, stddev 0.02 (a new instance)."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def _float_mask(mask, dtype):
    """A [B, T, 1] float mask from a bool/int/float [B, T] mask."""
    return tf.cast(mask, dtype)[..., tf.newaxis]


class BlockAdapter:
    """What a task may change inside one residual block, without touching the block's weights.

    The default methods change nothing (the pretrained block). ``peterrec.trainer.patches``
    subclasses it for serial and parallel model patches and IAK adapters.
    """

    def at_conv(self, index: int, conv_output, conv_input, mask, training=None):
        """The pre-LayerNorm activation after conv ``index`` (0 or 1) of the block, given the
        conv's output, its input ([B, T, d], zero at padding) and the padding mask [B, T]."""
        del index, conv_input, mask, training
        return conv_output

    def layer_norm(self, index: int, pretrained):
        """The LayerNorm to apply after conv ``index``; ``pretrained`` is the block's own."""
        del index
        return pretrained


PRETRAINED = BlockAdapter()  # the block as pretrained


class ResidualBlock(keras.layers.Layer):
    """One NextItNet residual block: two dilated convs, each followed by LayerNorm and ReLU.

    Sub-modules are explicit attributes (``conv1``, ``ln1``, ``conv2``, ``ln2``) so that a
    fine-tuning strategy can choose what trains by structure. ``call`` accepts an optional
    ``BlockAdapter``: one task's changes at the block's two insertion points.
    """

    def __init__(self, channels: int, dilations=(1, 2), kernel_size: int = 3, causal: bool = True,
                 layer_norm_epsilon: float = 1e-8, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.dilations = tuple(int(d) for d in dilations)
        self.kernel_size = int(kernel_size)
        self.causal = bool(causal)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.dropout_rate = float(dropout)
        # A fresh initializer per layer: a shared unseeded instance returns identical values.
        self.conv1 = keras.layers.Conv1D(self.channels, self.kernel_size, dilation_rate=self.dilations[0],
                                         padding="valid", kernel_initializer=_truncated_normal(), name="conv1")
        self.ln1 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="ln1")
        self.conv2 = keras.layers.Conv1D(self.channels, self.kernel_size, dilation_rate=self.dilations[1],
                                         padding="valid", kernel_initializer=_truncated_normal(), name="conv2")
        self.ln2 = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="ln2")
        self.dropout = keras.layers.Dropout(self.dropout_rate) if self.dropout_rate > 0 else None

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        self.conv1.build(shape)
        self.ln1.build(shape[:-1].concatenate([self.channels]))
        self.conv2.build(shape[:-1].concatenate([self.channels]))
        self.ln2.build(shape[:-1].concatenate([self.channels]))
        super().build(input_shape)

    def _pad(self, x, dilation):
        total = (self.kernel_size - 1) * dilation
        if self.causal:
            paddings = [[0, 0], [total, 0], [0, 0]]
        else:
            paddings = [[0, 0], [total // 2, total - total // 2], [0, 0]]
        return tf.pad(x, paddings)

    def _drop(self, h, training):
        return self.dropout(h, training=training) if self.dropout is not None else h

    def call(self, x, mask, adapter: Optional[BlockAdapter] = None, training=None):
        """x: [B, T, d]; mask: [B, T] (True/1 at real positions); adapter: a task's BlockAdapter."""
        adapter = adapter or PRETRAINED
        m = _float_mask(mask, x.dtype)
        x = x * m
        pre1 = adapter.at_conv(0, self.conv1(self._pad(x, self.dilations[0])), x, mask, training=training)
        h = self._drop(tf.nn.relu(adapter.layer_norm(0, self.ln1)(pre1)), training) * m
        pre2 = adapter.at_conv(1, self.conv2(self._pad(h, self.dilations[1])), h, mask, training=training)
        h2 = self._drop(tf.nn.relu(adapter.layer_norm(1, self.ln2)(pre2)), training)
        return (x + h2) * m

    def compute_mask(self, inputs, mask=None):
        # ``mask`` is this project's padding mask, passed explicitly; no Keras mask propagation.
        return None

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, dilations=list(self.dilations), kernel_size=self.kernel_size,
                      causal=self.causal, layer_norm_epsilon=self.layer_norm_epsilon, dropout=self.dropout_rate)
        return config


class ItemScorer(keras.layers.Layer):
    """Pretraining output layer: logits over all items, ``hidden @ W^T + b`` (W: [V, d]).

    Kept separate from the input embedding (as in NextItNet). Used by the pretraining
    objectives and the ``next_items`` serving signature; task models never use it.
    """

    def __init__(self, vocab_size: int, embedding_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = int(vocab_size)
        self.embedding_dim = int(embedding_dim)

    def build(self, input_shape=None):
        self.kernel = self.add_weight(
            name="kernel", shape=(self.vocab_size, self.embedding_dim),
            initializer=_truncated_normal())
        self.bias = self.add_weight(name="bias", shape=(self.vocab_size,), initializer="zeros")
        super().build(input_shape)

    def call(self, hidden):
        """hidden: [..., d] -> logits [..., V]."""
        return tf.linalg.matmul(hidden, self.kernel, transpose_b=True) + self.bias

    def get_config(self):
        config = super().get_config()
        config.update(vocab_size=self.vocab_size, embedding_dim=self.embedding_dim)
        return config


class NextItNetBackbone(keras.Model):
    """Item embedding + a stack of residual blocks (+ the pretraining output layer).

    keras-hub style: one constructor argument per ``BackboneConfig`` attribute, with
    ``get_config``/``from_config``; ``from_backbone_config``/``backbone_config`` convert.

    - ``embed(item_ids)`` -> [B, T, d], zero at padding.
    - ``encode(embeddings, mask, adapters=None, training=None)`` -> hidden [B, T, d];
      ``adapters`` is one task's BlockAdapter per block (or None for the pretrained function).
    - ``call(item_ids)`` = ``encode(embed(ids), ids != PAD)``.
    - ``item_logits(hidden)`` -> [..., V] scores of every item (pretraining head).
    """

    def __init__(self, vocab_size: int, embedding_dim: int = 64, dilations=DEFAULT_DILATIONS,
                 kernel_size: int = 3, causal: bool = True, layer_norm_epsilon: float = 1e-8,
                 dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self._config = BackboneConfig(vocab_size=int(vocab_size), embedding_dim=int(embedding_dim),
                                      dilations=tuple(dilations), kernel_size=int(kernel_size),
                                      causal=bool(causal), layer_norm_epsilon=float(layer_norm_epsilon),
                                      dropout=float(dropout)).validate()
        cfg = self._config
        self.embedding = keras.layers.Embedding(
            cfg.vocab_size, cfg.embedding_dim,
            embeddings_initializer=_truncated_normal(), name="item_embedding")
        self.blocks = [
            ResidualBlock(cfg.embedding_dim, pair, cfg.kernel_size, cfg.causal, cfg.layer_norm_epsilon,
                          cfg.dropout, name=f"block_{i}")
            for i, pair in enumerate(cfg.block_dilations)
        ]
        self.output_layer = ItemScorer(cfg.vocab_size, cfg.embedding_dim, name="item_scorer")

    @classmethod
    def from_backbone_config(cls, config: BackboneConfig, **kwargs) -> "NextItNetBackbone":
        """Builds a backbone from a BackboneConfig (weights freshly initialised)."""
        return cls(**config.validate().to_dict(), **kwargs)

    @property
    def backbone_config(self) -> BackboneConfig:
        """The BackboneConfig of this backbone (a copy)."""
        return BackboneConfig.from_dict(self._config.to_dict())

    @property
    def embedding_dim(self) -> int:
        return self._config.embedding_dim

    @property
    def vocab_size(self) -> int:
        return self._config.vocab_size

    @property
    def causal(self) -> bool:
        return self._config.causal

    def build(self, input_shape=None):
        """Creates every variable (embedding, blocks, output layer)."""
        d = self._config.embedding_dim
        self.embedding.build((None, None))
        for block in self.blocks:
            block.build((None, None, d))
        self.output_layer.build((None, d))
        self.built = True

    def ensure_built(self) -> "NextItNetBackbone":
        """Builds the variables if they do not exist yet; returns self."""
        if not self.built:
            self.build()
        return self

    @_no_autograph
    def embed(self, item_ids):
        """item ids [B, T] -> embeddings [B, T, d], zero at padding positions."""
        emb = self.embedding(item_ids)
        return emb * _float_mask(tf.not_equal(item_ids, ids.PAD_ID), emb.dtype)

    @_no_autograph
    def encode(self, embeddings, mask, adapters: Optional[Sequence[BlockAdapter]] = None, training=None):
        """Runs the blocks over [B, T, d] embeddings; mask [B, T] marks real positions.

        ``adapters``: one task's ``BlockAdapter`` per block (e.g. a ``PatchSet``), or None.
        """
        if adapters is not None and len(adapters) != len(self.blocks):
            raise ValueError(f"{len(adapters)} block adapters given but the backbone has {len(self.blocks)} blocks")
        x = embeddings
        for i, block in enumerate(self.blocks):
            x = block(x, mask, adapter=None if adapters is None else adapters[i], training=training)
        return x

    def call(self, item_ids, training=None):
        """Left-padded item ids [B, T] -> hidden states [B, T, d] (zero at padding)."""
        item_ids = tf.convert_to_tensor(item_ids)
        return self.encode(self.embed(item_ids), tf.not_equal(item_ids, ids.PAD_ID), training=training)

    @_no_autograph
    def item_logits(self, hidden):
        """Hidden states [..., d] -> logits over all items [..., V] (pretraining output layer)."""
        return self.output_layer(hidden)

    def encoder_layers(self):
        """The layers a task's user representation depends on: embedding and blocks."""
        return [self.embedding, *self.blocks]

    def encoder_parameter_count(self) -> int:
        """Parameters of the embedding and the blocks (without the pretraining output layer)."""
        self.ensure_built()
        return int(sum(int(tf.size(w)) for layer in self.encoder_layers() for w in layer.weights))

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._config.to_dict()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**config)

    def clone(self, name: Optional[str] = None) -> "NextItNetBackbone":
        """A new backbone with the same config and a copy of all weights."""
        self.ensure_built()
        config = self.get_config()
        config["name"] = name or f"{self.name}_copy"
        config["trainable"] = True
        other = type(self).from_config(config)
        other.build()
        other.set_weights(self.get_weights())
        return other
