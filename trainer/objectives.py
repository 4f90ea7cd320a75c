"""Pretraining objectives and task losses, with padding masked out (docs/method.md section 5, defect 3).

- ``NextItemObjective`` (causal NextItNet): inputs ``x[:, :-1]``, labels ``x[:, 1:]``; only
  positions whose input is a real item and whose label is a real item count.
- ``ClozeObjective`` (non-causal GRec encoder): ~30 % of the real positions are selected;
  of those 80 % become [MASK], 10 % a random item, 10 % stay; the selected items are predicted.
- Both use a full softmax over all items (reserved ids excluded) or a sampled softmax whose
  negatives come from a frequency-aware unigram sampler over the vocabulary counts
  (``tf.random.fixed_unigram_candidate_sampler``) with the log-Q correction of
  ``tf.nn.sampled_softmax_loss`` (each logit minus the log of its expected sample count).
  Reserved ids have count 0, so they are never sampled. This stays TF core: TFRS 0.7.7 has
  no sampler over the whole vocabulary (its ``tasks.Retrieval`` takes the batch's candidates
  as negatives; the cold-start head uses it, ``ColdStartHead.in_batch_loss``).
- ``PretrainingModel``: backbone + objective, usable with ``compile``/``fit``/``evaluate``;
  evaluation reports next-item HR@10/NDCG@10 of the last real item by full ranking.
- ``classification_loss`` / ``cold_start_loss``: the task losses used by ``TaskModel``.
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids
from peterrec.trainer import metrics as metrics_lib

# Our methods have no data-dependent Python control flow: skipping AutoGraph's source
# conversion makes tracing (tf.function, model.fit) faster. Layer ``call`` methods stay
# undecorated (Keras inspects their signature); they run unconverted when called from a
# decorated method such as ``train_step``.
_no_autograph = tf.autograph.experimental.do_not_convert

_NEG = -1e9


def frequency_unigrams(counts: Sequence[float], num_reserved: int = ids.NUM_RESERVED) -> list:
    """Per-id sampling weights from vocabulary counts: 0 for reserved ids; a real id with count
    0 gets half the smallest positive count (it must stay samplable for its log-Q to exist)."""
    weights = np.asarray(counts, np.float64).copy()
    if weights.ndim != 1 or len(weights) <= num_reserved:
        raise ValueError(f"counts must list one value per id (more than {num_reserved}), got shape {weights.shape}")
    if np.any(weights < 0):
        raise ValueError("counts must be >= 0")
    weights[:num_reserved] = 0.0
    real = weights[num_reserved:]
    positive = real[real > 0]
    if positive.size == 0:
        raise ValueError("counts has no positive entry among the real ids")
    real[real == 0] = positive.min() / 2.0
    return weights.tolist()


def sampled_softmax_loss(inputs, labels, weights, biases, counts: Sequence[float], num_sampled: int,
                         seed: Optional[int] = None):
    """Mean sampled-softmax loss with a frequency-aware sampler and log-Q correction.

    inputs [N, d], labels [N] (real ids), weights [V, d], biases [V]; ``counts`` [V] are the
    sampling weights (reserved ids 0: never sampled). ``num_sampled`` distinct negatives per
    call; accidental hits of the true label are removed.
    """
    unigrams = [float(c) for c in counts]
    vocab = len(unigrams)
    samplable = sum(1 for c in unigrams if c > 0)
    num_sampled = int(max(1, min(num_sampled, samplable - 1)))
    labels = tf.cast(tf.reshape(labels, [-1, 1]), tf.int64)
    sampled = tf.random.fixed_unigram_candidate_sampler(
        true_classes=labels, num_true=1, num_sampled=num_sampled, unique=True, range_max=vocab,
        unigrams=unigrams, seed=seed)
    losses = tf.nn.sampled_softmax_loss(
        weights=weights, biases=biases, labels=labels, inputs=inputs, num_sampled=num_sampled,
        num_classes=vocab, num_true=1, sampled_values=sampled, remove_accidental_hits=True)
    return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), losses.dtype))


def _reserved_penalty(vocab_size: int, num_reserved: int = ids.NUM_RESERVED):
    penalty = np.zeros([vocab_size], np.float32)
    penalty[:num_reserved] = _NEG
    return tf.constant(penalty)


class _ItemObjective:
    """Shared softmax machinery of the two pretraining objectives."""

    def __init__(self, softmax: str = "full", item_counts: Optional[Sequence[float]] = None,
                 num_sampled: Optional[int] = None, sample_fraction: float = 0.2, seed: Optional[int] = None):
        if softmax not in ("full", "sampled"):
            raise ValueError(f"softmax must be 'full' or 'sampled', got {softmax!r}")
        self.softmax = softmax
        self.seed = seed
        self.sample_fraction = float(sample_fraction)
        self.unigrams = None
        self.num_sampled = num_sampled
        if softmax == "sampled":
            if item_counts is None:
                raise ValueError("softmax='sampled' needs item_counts (the vocabulary counts, one per id) for "
                                 "the frequency-aware sampler")
            self.unigrams = frequency_unigrams(item_counts)
            if self.num_sampled is None:
                self.num_sampled = max(1, int(round(self.sample_fraction * len(self.unigrams))))

    def _full_loss(self, backbone, hidden, labels, weights):
        logits = backbone.item_logits(hidden) + _reserved_penalty(backbone.vocab_size)
        per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
        w = tf.cast(weights, per_position.dtype)
        return tf.math.divide_no_nan(tf.reduce_sum(per_position * w), tf.reduce_sum(w)), logits

    def _sampled_loss(self, backbone, hidden, labels, weights):
        weights = tf.cast(weights, tf.bool)
        scorer = backbone.output_layer
        return sampled_softmax_loss(tf.boolean_mask(hidden, weights), tf.boolean_mask(labels, weights),
                                    scorer.kernel, scorer.bias, self.unigrams, self.num_sampled, seed=self.seed)

    @_no_autograph
    def loss_on(self, backbone, hidden, labels, weights, softmax: Optional[str] = None):
        """(loss, logits-or-None) of predicting ``labels`` [B, T] from ``hidden`` [B, T, d] where
        ``weights`` [B, T] is True."""
        softmax = softmax or self.softmax
        if softmax == "full":
            return self._full_loss(backbone, hidden, labels, weights)
        if self.unigrams is None:
            raise ValueError("sampled softmax needs item_counts")
        return self._sampled_loss(backbone, hidden, labels, weights), None

    def get_config(self):
        return {"softmax": self.softmax, "num_sampled": self.num_sampled,
                "sample_fraction": self.sample_fraction, "seed": self.seed}


def _count(weights):
    """Number of True (non-zero) entries of a [B, T] position mask, as a float scalar."""
    return tf.reduce_sum(tf.cast(tf.cast(weights, tf.bool), tf.float32))


class NextItemObjective(_ItemObjective):
    """Causal next-item prediction at every real position (NextItNet pretraining)."""

    @_no_autograph
    def loss_and_count(self, backbone, item_ids, training=None, softmax: Optional[str] = None):
        """item_ids [B, T] left-padded -> (mean loss over the counted positions, logits [B, T-1, V]
        or None, number of counted positions: the weight of this batch's mean)."""
        item_ids = tf.convert_to_tensor(item_ids)
        inputs, labels = item_ids[:, :-1], item_ids[:, 1:]
        weights = tf.logical_and(tf.not_equal(inputs, ids.PAD_ID), labels >= ids.NUM_RESERVED)
        hidden = backbone(inputs, training=training)
        loss, logits = self.loss_on(backbone, hidden, labels, weights, softmax)
        return loss, logits, _count(weights)

    @_no_autograph
    def __call__(self, backbone, item_ids, training=None, softmax: Optional[str] = None):
        """item_ids [B, T] left-padded -> (mean loss over counted positions, logits [B, T-1, V] or None)."""
        loss, logits, _ = self.loss_and_count(backbone, item_ids, training, softmax)
        return loss, logits

    compute_loss = __call__

    @_no_autograph
    def last_item_logits(self, backbone, item_ids, training=None):
        """Scores [B, V] for the last position of each left-padded sequence from the items before it."""
        item_ids = tf.convert_to_tensor(item_ids)
        hidden = backbone(item_ids[:, :-1], training=training)[:, -1, :]
        return backbone.item_logits(hidden) + _reserved_penalty(backbone.vocab_size)


class ClozeObjective(_ItemObjective):
    """Cloze (masked item) prediction for the non-causal GRec encoder."""

    def __init__(self, mask_rate: float = 0.3, softmax: str = "full", item_counts=None, num_sampled=None,
                 sample_fraction: float = 0.2, seed: Optional[int] = None):
        super().__init__(softmax, item_counts, num_sampled, sample_fraction, seed)
        if not 0.0 < mask_rate < 1.0:
            raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate}")
        self.mask_rate = float(mask_rate)
        self._rng = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.Generator.from_non_deterministic_state()

    @_no_autograph
    def corrupt(self, item_ids, vocab_size: int):
        """-> (corrupted inputs, labels, weights): ~mask_rate of real positions selected; of those
        80 % [MASK], 10 % a uniformly random real item, 10 % unchanged."""
        item_ids = tf.cast(tf.convert_to_tensor(item_ids), tf.int32)
        shape = tf.shape(item_ids)
        real = item_ids >= ids.NUM_RESERVED
        selected = tf.logical_and(self._rng.uniform(shape) < self.mask_rate, real)
        action = self._rng.uniform(shape)
        random_items = self._rng.uniform(shape, minval=ids.NUM_RESERVED, maxval=vocab_size, dtype=tf.int32)
        inputs = tf.where(tf.logical_and(selected, action < 0.8), ids.MASK_ID, item_ids)
        inputs = tf.where(tf.logical_and(selected, tf.logical_and(action >= 0.8, action < 0.9)), random_items, inputs)
        return inputs, item_ids, selected

    @_no_autograph
    def loss_and_count(self, backbone, item_ids, training=None, softmax: Optional[str] = None):
        """item_ids [B, T] left-padded -> (mean loss over the selected positions, logits or None,
        number of selected positions: the weight of this batch's mean)."""
        inputs, labels, weights = self.corrupt(item_ids, backbone.vocab_size)
        loss, logits = self.loss_on_corrupted(backbone, inputs, labels, weights, training, softmax)
        return loss, logits, _count(weights)

    @_no_autograph
    def __call__(self, backbone, item_ids, training=None, softmax: Optional[str] = None):
        """item_ids [B, T] left-padded -> (mean loss over the selected positions, logits or None)."""
        loss, logits, _ = self.loss_and_count(backbone, item_ids, training, softmax)
        return loss, logits

    compute_loss = __call__

    @_no_autograph
    def loss_on_corrupted(self, backbone, inputs, labels, weights, training=None, softmax=None):
        """The loss of an already corrupted batch (deterministic; used by tests and evaluation)."""
        hidden = backbone(inputs, training=training)
        return self.loss_on(backbone, hidden, labels, weights, softmax)

    @_no_autograph
    def last_item_logits(self, backbone, item_ids, training=None):
        """Scores [B, V] for the last position, replaced by [MASK], given the rest of the sequence."""
        item_ids = tf.cast(tf.convert_to_tensor(item_ids), tf.int32)
        batch = tf.shape(item_ids)[0]
        inputs = tf.concat([item_ids[:, :-1], tf.fill([batch, 1], ids.MASK_ID)], axis=1)
        hidden = backbone(inputs, training=training)[:, -1, :]
        return backbone.item_logits(hidden) + _reserved_penalty(backbone.vocab_size)

    def get_config(self):
        return {**super().get_config(), "mask_rate": self.mask_rate}


def prebuild_optimizer(model) -> None:
    """Creates the optimizer's slot variables for the model's trainable variables now.

    Otherwise they are created inside the first traced train step, which makes TensorFlow trace
    ``train_function`` twice (variable creation is only allowed on a first, discarded trace).
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and hasattr(optimizer, "build") and model.trainable_variables:
        optimizer.build(model.trainable_variables)


def make_objective(backbone, softmax: str = "full", item_counts=None, **kwargs):
    """NextItemObjective for a causal backbone, ClozeObjective for a non-causal one."""
    cls = NextItemObjective if backbone.causal else ClozeObjective
    if cls is NextItemObjective:
        kwargs.pop("mask_rate", None)
    return cls(softmax=softmax, item_counts=item_counts, **kwargs)


class PretrainingModel(keras.Model):
    """Backbone + pretraining objective for ``compile(optimizer)`` / ``fit`` / ``evaluate``.

    Batches are dicts with ``item_ids`` [B, T] (left-padded) or bare id tensors. Training reports
    ``loss``, the mean over the counted positions of the epoch (each batch's mean weighted by its
    number of counted positions); evaluation reports the full-softmax ``loss`` and ``hr@10`` / ``ndcg@10`` of the last
    real item of each sequence, ranked against all items.
    """

    def __init__(self, backbone, objective, k: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone.ensure_built()
        self.objective = objective
        self.k = int(k)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.hit_rate = metrics_lib.HitRate(self.k)
        self.ndcg = metrics_lib.NDCG(self.k)

    def compile(self, *args, **kwargs):
        """As keras ``compile``; also creates the optimizer's slots so the first step traces once."""
        super().compile(*args, **kwargs)
        prebuild_optimizer(self)

    @staticmethod
    def _ids(data):
        if isinstance(data, dict):
            return data["item_ids"]
        if isinstance(data, (tuple, list)):
            return PretrainingModel._ids(data[0])
        return data

    def call(self, item_ids, training=None):
        return self.backbone(self._ids(item_ids), training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.hit_rate, self.ndcg]

    @_no_autograph
    def train_step(self, data):
        item_ids = self._ids(data)
        with tf.GradientTape() as tape:
            loss, _, count = self.objective.loss_and_count(self.backbone, item_ids, training=True)
            if self.losses:
                loss = loss + tf.add_n(self.losses)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.loss_tracker.update_state(loss, sample_weight=count)
        return {"loss": self.loss_tracker.result()}

    @_no_autograph
    def test_step(self, data):
        item_ids = tf.convert_to_tensor(self._ids(data))
        loss, _, count = self.objective.loss_and_count(self.backbone, item_ids, training=False, softmax="full")
        self.loss_tracker.update_state(loss, sample_weight=count)
        logits = self.objective.last_item_logits(self.backbone, item_ids, training=False)
        targets = item_ids[:, -1]
        self.hit_rate.update_state(targets, logits)
        self.ndcg.update_state(targets, logits)
        return {m.name: m.result() for m in self.metrics}


def classification_loss(logits, labels):
    """Mean softmax cross-entropy over all classes; labels [B] int."""
    labels = tf.reshape(tf.cast(labels, tf.int32), [-1])
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def cold_start_loss(logits, target_ids, num_reserved: int = len(ids.TARGET_RESERVED_TOKENS)):
    """Mean full-softmax cross-entropy over the (user, target) pairs that are not padding.

    logits [B, C]; target_ids [B] or [B, Tt] padded with ids below ``num_reserved``.
    """
    target_ids = tf.cast(target_ids, tf.int32)
    if target_ids.shape.rank == 1:
        target_ids = target_ids[:, tf.newaxis]
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    valid = target_ids >= num_reserved
    picked = tf.gather(log_probs, tf.where(valid, target_ids, num_reserved), batch_dims=1)
    w = tf.cast(valid, picked.dtype)
    return -tf.math.divide_no_nan(tf.reduce_sum(picked * w), tf.reduce_sum(w))
