"""Per-task adapters grafted into the frozen backbone: PeterRec model patches and IAK adapters.

- ``ModelPatch`` (docs/method.md section 3): ``MP(x) = x + W_up . GELU(W_down . x + b1) + b2``;
  ``W_up`` and ``b2`` start at zero, so a patched network starts exactly at the pretrained
  function. This project computes the bottleneck in units of the input's scale (see
  "Scale-relative adapters" below).
- ``IAKAdapter`` (docs/method.md section 6): a variational information-bottleneck adapter.
- ``BlockPatch``: the two adapters of one residual block and optionally a task-owned copy of
  the block's second LayerNorm; ``SerialBlockPatch`` and ``ParallelBlockPatch`` place them.
- ``PatchSet``: one BlockPatch per block, i.e. all of one task's patches.

Placement (a BlockPatch is the block's ``backbone.BlockAdapter``: the block calls it after each
of its convs and knows nothing about placements):

- serial:   ``h = ReLU(LN1(MP1(Conv_r1(x))));  h2 = ReLU(LN2(MP2(Conv_r2(h))))``
- parallel: ``h = ReLU(LN1(Conv_r1(x) + P1(x)));  h2 = ReLU(LN2(Conv_r2(h) + P2(h)))``

where in parallel placement ``P(x)`` is the patch's bottleneck branch only
(``W_up . GELU(W_down . x + b1) + b2``, i.e. ``MP(x) - x``). With the skip term the block would
start at ``Conv(x) + x`` instead of the pretrained ``Conv(x)``; adding only the branch keeps the
"patched network == pretrained network at step 0" property for both placements.

Patches belong to tasks, not to the backbone: several tasks keep their own PatchSets and pass
the block patches of the one they need to ``NextItNetBackbone.encode``, so one backbone
instance serves many tasks.

Scale-relative adapters: every adapter reads ``x / s`` and returns ``s * delta(x / s)``, where
``s`` is the root mean square of ``x`` over the channels at each position, so
``MP(x) = x + s . (W_up . GELU(W_down . x / s + b1) + b2)``. Each insertion point is followed by
a LayerNorm, which discards the scale of its input, and the scale differs by orders of
magnitude between insertion points of a pretrained backbone: the first conv of block 0 reads
the 0.02-scale item embeddings and outputs ~0.006 RMS, later convs ~0.1-0.3. With the plain
formula, Adam's first steps move ``b2`` by about the learning rate (3e-3) per step, so after a
few steps the patch's constant swamps block 0's conv signal, LN1 outputs nearly the same
vector at every position, and the user information is wiped out at the bottom of the network
(fine-tuning on 1,000 users then stayed at the majority rate on its own training set). In
units of ``s`` a step is the same relative change at every insertion point, and the function
at initialisation is still exactly the pretrained one (``W_up`` and ``b2`` start at zero).
"""

from typing import Optional

import tensorflow as tf
import tf_keras as keras

from peterrec.trainer.backbone import BlockAdapter
from peterrec.trainer.config import AdapterConfig

# Our methods have no data-dependent Python control flow: skipping AutoGraph's source
# conversion makes tracing (tf.function, model.fit) faster. Layer ``call`` methods stay
# undecorated (Keras inspects their signature); they run unconverted when called from a
# decorated method such as ``train_step``.
_no_autograph = tf.autograph.experimental.do_not_convert


_SCALE_EPSILON = 1e-12  # added to the mean square; far below any real activation's (~1e-5 and up)


def _gelu(x):
    return tf.nn.gelu(x, approximate=False)


def position_scale(x):
    """The root mean square of ``x`` [..., d] over its channels, [..., 1]: the unit in which the
    adapters read their input and write their output (module docstring)."""
    return tf.sqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + _SCALE_EPSILON)


class ModelPatch(keras.layers.Layer):
    """PeterRec's model patch: a bottleneck residual MLP on the channel axis, identity at init.

    ``call(x, residual=True)`` returns ``x + delta(x)``; ``residual=False`` returns ``delta(x)``
    alone (parallel placement). ``delta(x) = s . (W_up . GELU(W_down . x / s + b1) + b2)`` with
    ``s = position_scale(x)``, so ``delta(c x) = c delta(x)`` (module docstring).
    """

    def __init__(self, channels: int, bottleneck: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.bottleneck = int(bottleneck)
        self.down = keras.layers.Dense(self.bottleneck, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=0.02), name="down")
        # Zero-initialised up-projection: the patch adds nothing until it is trained.
        self.up = keras.layers.Dense(self.channels, kernel_initializer="zeros", bias_initializer="zeros",
                                     name="up")

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        self.down.build(shape)
        self.up.build(shape[:-1].concatenate([self.bottleneck]))
        super().build(input_shape)

    def call(self, x, mask=None, residual=True, training=None):
        """x [..., d] -> x + delta (residual) or delta; ``mask`` is accepted and unused."""
        scale = position_scale(x)
        delta = scale * self.up(_gelu(self.down(x / scale)))
        return x + delta if residual else delta

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, bottleneck=self.bottleneck)
        return config


class IAKAdapter(keras.layers.Layer):
    """Information-aware adaptive kernel: THIS PROJECT'S READING of Jiang et al. (WWW 2025).

    The paper's equations are not public (docs/method.md section 6); what is known is that IAK is a
    plug-and-play encoder-decoder trained via a Gaussian approximation, explained by the
    information bottleneck as knowledge compression followed by knowledge matching. We read it
    as a variational information-bottleneck adapter at the model-patch insertion points:

    - compression (encoder): ``mu = Dense_r(h / s)``, ``log_var = Dense_r(h / s)``,
      ``z = mu + exp(log_var / 2) * eps`` while training, ``z = mu`` at inference;
    - matching (decoder): ``delta = s . Dense_d(GELU(z))``, zero-initialised, output
      ``h + delta``; ``s = position_scale(h)``, as for the model patch (module docstring);
    - loss: ``beta(step) * KL(N(mu, sigma^2) || N(0, I))``, the KL summed over the latent
      dimensions and averaged over real (non-padding) positions, added with ``add_loss``;
      ``beta(step) = beta * min(1, step / warmup_steps)`` (linear warm-up). ``step`` is a
      non-trainable counter of this adapter's training-mode calls (one per training step).
    """

    def __init__(self, channels: int, bottleneck: int = 16, beta: float = 1e-3, warmup_steps: int = 500,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.bottleneck = int(bottleneck)
        self.beta = float(beta)
        self.warmup_steps = int(warmup_steps)
        self.mu_layer = keras.layers.Dense(self.bottleneck, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=0.02), name="mu")
        self.log_var_layer = keras.layers.Dense(self.bottleneck, kernel_initializer=keras.initializers.TruncatedNormal(
            stddev=0.02), name="log_var")
        self.decoder = keras.layers.Dense(self.channels, kernel_initializer="zeros", bias_initializer="zeros",
                                          name="decoder")

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        self.mu_layer.build(shape)
        self.log_var_layer.build(shape)
        self.decoder.build(shape[:-1].concatenate([self.bottleneck]))
        self.step = self.add_weight(name="step", shape=(), dtype=tf.float32, initializer="zeros",
                                    trainable=False)
        super().build(input_shape)

    @_no_autograph
    def current_beta(self):
        """beta(step): linear warm-up from 0 to ``beta`` over ``warmup_steps`` training steps."""
        if self.warmup_steps <= 0:
            return tf.constant(self.beta, tf.float32)
        return self.beta * tf.minimum(1.0, self.step / float(self.warmup_steps))

    @_no_autograph
    def kl_divergence(self, mu, log_var, mask=None):
        """Mean over real positions of KL(N(mu, sigma^2) || N(0, I)) summed over latent dims."""
        kl = 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(log_var) - 1.0 - log_var, axis=-1)
        if mask is None:
            return tf.reduce_mean(kl)
        weights = tf.cast(mask, kl.dtype)
        return tf.reduce_sum(kl * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def call(self, x, mask=None, residual=True, training=None):
        """x [B, T, d] -> x + delta (residual) or delta. Adds the KL term when training."""
        scale = position_scale(x)
        unit = x / scale
        mu = self.mu_layer(unit)
        if training:
            log_var = tf.clip_by_value(self.log_var_layer(unit), -10.0, 10.0)
            z = mu + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mu), dtype=mu.dtype)
            self.add_loss(self.current_beta() * self.kl_divergence(mu, log_var, mask))
            self.step.assign_add(1.0)
        else:
            z = mu
        delta = scale * self.decoder(_gelu(z))
        return x + delta if residual else delta

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, bottleneck=self.bottleneck, beta=self.beta,
                      warmup_steps=self.warmup_steps)
        return config


def make_adapter(adapter_config: AdapterConfig, channels: int, name: str) -> keras.layers.Layer:
    """A ModelPatch or an IAKAdapter for ``channels`` channels, per the adapter config."""
    kind = adapter_config.with_defaults().kind
    if kind == "patch":
        return ModelPatch(channels, adapter_config.bottleneck, name=name)
    if kind == "iak":
        return IAKAdapter(channels, adapter_config.bottleneck, adapter_config.iak_beta,
                          adapter_config.iak_warmup_steps, name=name)
    raise ValueError(f"unknown adapter kind {kind!r}")


class BlockPatch(keras.layers.Layer, BlockAdapter):
    """One task's adapters for one residual block (``adapter1`` at conv1, ``adapter2`` at conv2)
    and optionally ``ln2``, a task-owned copy of the block's second LayerNorm (initialised from
    the pretrained one by ``copy_layer_norm_from``). The block calls it as its ``BlockAdapter``;
    the subclasses say where the adapters go (``placement``).
    """

    placement = ""

    def __init__(self, adapter_config: AdapterConfig, channels: int, with_layer_norm: bool = True,
                 layer_norm_epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        if isinstance(adapter_config, dict):
            adapter_config = AdapterConfig.from_dict(adapter_config)
        self.adapter_config = adapter_config.with_defaults()
        if self.adapter_config.placement != self.placement:
            raise ValueError(f"{type(self).__name__} places adapters {self.placement!r}, but the adapter config "
                             f"says {self.adapter_config.placement!r}: use block_patch_for()")
        self.channels = int(channels)
        self.with_layer_norm = bool(with_layer_norm)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.adapter1 = make_adapter(self.adapter_config, self.channels, "adapter1")
        self.adapter2 = make_adapter(self.adapter_config, self.channels, "adapter2")
        self.ln2 = (keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon, name="ln2")
                    if self.with_layer_norm else None)

    def build(self, input_shape=None):
        shape = tf.TensorShape((None, None, self.channels))
        self.adapter1.build(shape)
        self.adapter2.build(shape)
        if self.ln2 is not None:
            self.ln2.build(shape)
        super().build(shape)

    def copy_layer_norm_from(self, block) -> None:
        """Sets the task's LN2 copy to the given ResidualBlock's pretrained LN2 values."""
        if self.ln2 is None:
            return
        if not self.built:
            self.build()
        self.ln2.set_weights(block.ln2.get_weights())

    def adapter_at(self, index: int) -> keras.layers.Layer:
        """The adapter at conv ``index`` (0 or 1)."""
        return (self.adapter1, self.adapter2)[index]

    def layer_norm(self, index: int, pretrained):
        """The task's LN2 copy after the second conv, if it has one; else the block's own."""
        return self.ln2 if (index == 1 and self.ln2 is not None) else pretrained

    def call(self, inputs=None):  # pragma: no cover - the block drives the adapters
        raise NotImplementedError("BlockPatch is applied by ResidualBlock.call(x, mask, adapter=...)")

    def get_config(self):
        config = super().get_config()
        config.update(adapter_config=self.adapter_config.to_dict(), channels=self.channels,
                      with_layer_norm=self.with_layer_norm, layer_norm_epsilon=self.layer_norm_epsilon)
        return config


class SerialBlockPatch(BlockPatch):
    """Adapters after each conv: ``pre = A(Conv(x))``."""

    placement = "serial"

    def at_conv(self, index, conv_output, conv_input, mask, training=None):
        return self.adapter_at(index)(conv_output, mask=mask, training=training)


class ParallelBlockPatch(BlockPatch):
    """Adapters beside each conv: ``pre = Conv(x) + delta_A(x)`` (the branch alone, so the
    patched block starts as the pretrained one)."""

    placement = "parallel"

    def at_conv(self, index, conv_output, conv_input, mask, training=None):
        return conv_output + self.adapter_at(index)(conv_input, mask=mask, residual=False, training=training)


BLOCK_PATCH_CLASSES = {cls.placement: cls for cls in (SerialBlockPatch, ParallelBlockPatch)}


def block_patch_for(adapter_config: AdapterConfig, channels: int, with_layer_norm: bool = True,
                    layer_norm_epsilon: float = 1e-8, **kwargs) -> BlockPatch:
    """The BlockPatch of the adapter config's placement (unset: the default placement)."""
    adapter_config = adapter_config.with_defaults()
    return BLOCK_PATCH_CLASSES[adapter_config.placement](adapter_config, channels, with_layer_norm,
                                                          layer_norm_epsilon, **kwargs)


class PatchSet(keras.layers.Layer):
    """All of one task's patches: ``block_patches[i]`` goes into backbone block i."""

    def __init__(self, adapter_config: AdapterConfig, channels: int, num_blocks: int,
                 train_layer_norm: bool = True, layer_norm_epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        if isinstance(adapter_config, dict):
            adapter_config = AdapterConfig.from_dict(adapter_config)
        self.adapter_config = adapter_config.with_defaults()
        self.channels = int(channels)
        self.num_blocks = int(num_blocks)
        self.train_layer_norm = bool(train_layer_norm)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.block_patches = [
            block_patch_for(self.adapter_config, self.channels, self.train_layer_norm, self.layer_norm_epsilon,
                            name=f"block_patch_{i}")
            for i in range(self.num_blocks)
        ]

    @classmethod
    def create(cls, backbone, adapter_config: AdapterConfig, train_layer_norm: bool = True,
               name: Optional[str] = None) -> "PatchSet":
        """A PatchSet matching ``backbone``, built, with LN2 copies taken from the backbone."""
        backbone.ensure_built()
        config = backbone.backbone_config
        patch_set = cls(adapter_config, config.embedding_dim, config.num_blocks, train_layer_norm,
                        config.layer_norm_epsilon, name=name or "patches")
        patch_set.build()
        for block_patch, block in zip(patch_set.block_patches, backbone.blocks):
            block_patch.copy_layer_norm_from(block)
        return patch_set

    @property
    def placement(self) -> str:
        return self.adapter_config.placement

    def build(self, input_shape=None):
        for block_patch in self.block_patches:
            block_patch.build()
        super().build((None, None, self.channels))

    def call(self, inputs=None):  # pragma: no cover - the backbone drives the patches
        raise NotImplementedError("PatchSet is applied by NextItNetBackbone.encode(..., adapters=block_patches)")

    def get_config(self):
        config = super().get_config()
        config.update(adapter_config=self.adapter_config.to_dict(), channels=self.channels,
                      num_blocks=self.num_blocks, train_layer_norm=self.train_layer_norm,
                      layer_norm_epsilon=self.layer_norm_epsilon)
        return config
