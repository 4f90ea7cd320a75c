"""Task heads on top of the user vector.

- ``ClassificationHead``: logits over ALL classes (a full softmax; the original code scored a
  few random wrong classes, which inflates accuracy: docs/method.md section 5, defect 7).
- ``ColdStartHead``: a new target-item embedding table ``E_t``; ``logits = u . E_t^T + b``,
  full softmax by default; ``softmax="sampled"`` trains with TFRS's in-batch softmax
  (``tasks.Retrieval``: the batch's other targets as negatives, log-Q corrected,
  ``sampled_loss`` = ``in_batch_loss``). ``unigram_loss`` keeps the former sampled softmax
  (frequency-aware negatives from the whole vocabulary) as the benchmark's baseline.
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from peterrec.components import ids

# Our methods have no data-dependent Python control flow: skipping AutoGraph's source
# conversion makes tracing (tf.function, model.fit) faster. Layer ``call`` methods stay
# undecorated (Keras inspects their signature); they run unconverted when called from a
# decorated method such as ``train_step``.
_no_autograph = tf.autograph.experimental.do_not_convert

_NEG = -1e9


@tf.function(autograph=True, reduce_retracing=True)
def _retrieval_loss(queries, candidates, probability, candidate_ids):
    """Summed TFRS in-batch softmax loss (log-Q corrected, accidental hits removed). A
    tf.function that AutoGraph converts: ``Retrieval.call`` takes ``len()`` of a shape tensor,
    which fails in our unconverted train steps (``_no_autograph``)."""
    import tensorflow_recommenders as tfrs

    retrieval = tfrs.tasks.Retrieval(remove_accidental_hits=True)
    return retrieval(queries, candidates, candidate_sampling_probability=probability, candidate_ids=candidate_ids,
                     compute_metrics=False, compute_batch_metrics=False)


class ClassificationHead(keras.layers.Layer):
    """Feed-forward softmax head: optional hidden ReLU layer, then logits over all classes (the
    logits layer starts small, truncated normal with stddev 0.02, so training starts at ~log C)."""

    def __init__(self, num_classes: int, hidden_units: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        self.hidden_units = int(hidden_units)
        self.hidden = keras.layers.Dense(self.hidden_units, activation="relu", name="hidden") \
            if self.hidden_units > 0 else None
        # Small logits at the start: every class near 1/C, the loss near log C. Glorot's default on
        # the LayerNorm-ed read-out (unit-scale features) gave logits of std ~1.3, confident random
        # guesses the first epochs spent unlearning, with an eval loss above log C meanwhile.
        self.logits = keras.layers.Dense(self.num_classes, name="logits",
                                         kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def build(self, input_shape):
        shape = tf.TensorShape(input_shape)
        if self.hidden is not None:
            self.hidden.build(shape)
            shape = shape[:-1].concatenate([self.hidden_units])
        self.logits.build(shape)
        super().build(input_shape)

    def call(self, user_vectors):
        """[B, d'] -> logits [B, num_classes]."""
        h = self.hidden(user_vectors) if self.hidden is not None else user_vectors
        return self.logits(h)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, hidden_units=self.hidden_units)
        return config


class ColdStartHead(keras.layers.Layer):
    """Scores every target-domain item for a user: ``logits = u . E_t^T + b``.

    num_items: target vocabulary size including its reserved ids (``num_reserved``, padding);
    reserved ids get a large negative logit so they never win nor take probability mass.
    embedding_dim: 0 scores the user vector directly (table width = user-vector width); a
    positive value first projects the user vector to that width (no bias), which shrinks the
    table, the bulk of a cold-start task's parameters when the target vocabulary is large.
    """

    def __init__(self, num_items: int, num_reserved: int = len(ids.TARGET_RESERVED_TOKENS), embedding_dim: int = 0,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.num_reserved = int(num_reserved)
        self.embedding_dim = int(embedding_dim)
        self.projection = (keras.layers.Dense(self.embedding_dim, use_bias=False, name="projection")
                           if self.embedding_dim > 0 else None)

    def _project(self, user_vectors):
        return self.projection(user_vectors) if self.projection is not None else user_vectors

    def build(self, input_shape):
        dim = int(tf.TensorShape(input_shape)[-1])
        if self.projection is not None:
            self.projection.build(tf.TensorShape(input_shape))
            dim = self.embedding_dim
        self.item_embeddings = self.add_weight(
            name="target_item_embeddings", shape=(self.num_items, dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.item_bias = self.add_weight(name="target_item_bias", shape=(self.num_items,), initializer="zeros")
        reserved = np.zeros([self.num_items], np.float32)
        reserved[: self.num_reserved] = _NEG
        self._reserved_penalty = tf.constant(reserved)
        super().build(input_shape)

    def call(self, user_vectors):
        """[B, d'] -> logits [B, num_items] (reserved ids at -1e9)."""
        logits = tf.linalg.matmul(self._project(user_vectors), self.item_embeddings, transpose_b=True) + self.item_bias
        return logits + tf.cast(self._reserved_penalty, logits.dtype)

    def _pairs(self, user_vectors, target_ids):
        """(projected user vectors [N, d], target ids [N]) of the (user, target) pairs whose
        target is not padding; target_ids [B] or [B, Tt]."""
        target_ids = tf.convert_to_tensor(target_ids)
        if target_ids.shape.rank == 1:
            target_ids = target_ids[:, tf.newaxis]
        users = tf.repeat(self._project(user_vectors), tf.shape(target_ids)[1], axis=0)
        flat = tf.reshape(target_ids, [-1])
        keep = flat >= self.num_reserved
        return tf.boolean_mask(users, keep), tf.boolean_mask(flat, keep)

    def _counts(self, target_counts: Optional[Sequence[float]]) -> list:
        """Sampling weights per target id: ``target_counts`` as given, else uniform over the
        real ids (reserved ids 0)."""
        if target_counts is None:
            return [0.0] * self.num_reserved + [1.0] * (self.num_items - self.num_reserved)
        return list(target_counts)

    @_no_autograph
    def sampled_loss(self, user_vectors, target_ids, target_counts: Optional[Sequence[float]] = None):
        """The sampled cold-start training loss (``softmax="sampled"``): ``in_batch_loss``, whose
        negatives are the batch's other targets.

        TFRS's in-batch softmax replaced our unigram-sampled one here (``unigram_loss``): it
        ranked better at the same settings (benchmarks/tfrs_compare.py; docs/architecture.md,
        Design decisions).
        """
        return self.in_batch_loss(user_vectors, target_ids, target_counts)

    @_no_autograph
    def unigram_loss(self, user_vectors, target_ids, num_sampled: int = 100,
                     target_counts: Optional[Sequence[float]] = None, seed: Optional[int] = None):
        """Mean sampled-softmax loss over the (user, target) pairs whose target is not padding,
        with ``num_sampled`` negatives from the whole target vocabulary (the cold-start sampled
        softmax before TFRS; kept as the baseline of benchmarks/tfrs_compare.py).

        target_ids: [B] or [B, Tt] (padded with 0). Negatives come from the frequency-aware
        unigram sampler over ``target_counts`` (one per target id; reserved ids get 0) when given,
        else uniformly over the real target ids; the loss subtracts log Q (sampled_softmax_loss).
        """
        from peterrec.trainer.objectives import sampled_softmax_loss

        users, targets = self._pairs(user_vectors, target_ids)
        return sampled_softmax_loss(users, targets, self.item_embeddings, self.item_bias,
                                    self._counts(target_counts), num_sampled, seed=seed)

    @_no_autograph
    def in_batch_loss(self, user_vectors, target_ids, target_counts: Optional[Sequence[float]] = None):
        """Mean in-batch softmax loss (TFRS ``tasks.Retrieval``) over the non-padding pairs.

        Each (user, target) pair of the batch is one query; the candidates are the batch's
        targets, repeats included (as draws of the frequency sampler would be). A logit is
        ``u . e_j + b_j - log q_j`` with ``q_j`` proportional to item j's share of the pairs
        (``target_counts``, else uniform): the log-Q correction of sampled softmax. ``q_j`` is
        divided by the largest share, which softmax ignores (one constant for every logit),
        because TFRS clips q to [1e-6, 1]: so only items a million times rarer than the most
        frequent one are clipped, however large the vocabulary. Other pairs with the same
        target id are removed (accidental hits).
        """
        from peterrec.trainer.objectives import frequency_unigrams

        users, targets = self._pairs(user_vectors, target_ids)
        # The bias enters as one more dimension: [u, 1] . [e_j, b_j] = u . e_j + b_j.
        queries = tf.concat([users, tf.ones_like(users[:, :1])], axis=1)
        candidates = tf.concat([tf.gather(self.item_embeddings, targets),
                                tf.gather(self.item_bias, targets)[:, tf.newaxis]], axis=1)
        counts = np.asarray(frequency_unigrams(self._counts(target_counts), self.num_reserved), np.float64)
        probability = tf.gather(tf.constant(counts / counts.max(), users.dtype), targets)
        pairs = tf.cast(tf.size(targets), users.dtype)

        def mean_loss():
            return _retrieval_loss(queries, candidates, probability, targets) / pairs

        # TFRS's accidental-hit removal fails on zero pairs (an argmax over an empty axis).
        return tf.cond(pairs > 0, mean_loss, lambda: tf.zeros([], users.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(num_items=self.num_items, num_reserved=self.num_reserved, embedding_dim=self.embedding_dim)
        return config
