"""Whole histories in windows of the model's context: pretraining and leave-one-out data.

A user's history is longer than the context L a model reads, so pretraining cuts each history
into windows of at most L items (``tile_windows``), with an offset that changes every epoch, so
every interaction but a user's first is a target once per epoch. Windows of similar length are
batched together (``window_training_dataset``) so that a batch pads little. Leave-one-out
evaluation (``leave_one_out_dataset``) holds out each user's last item (test) and the one before
it (validation) and ends each input window at the held-out target.
"""

from typing import Dict, Optional, Sequence, Union

from peterrec.components import example_format, ids
from peterrec.trainer.data import (DEFAULT_SHUFFLE_BUFFER, DataError, chain_epochs, check_ids_below,
                                   expand_file_patterns, left_pad, plain_function)

DEFAULT_LENGTH_SORTED_CHUNK = 32  # batches sorted by window length together (1: no sorting)


def _parse_items(serialized):
    """A batch of serialized examples -> their item ids, ragged int32 [B, None] (oldest first)."""
    import tensorflow as tf

    spec = {example_format.ITEM_IDS: tf.io.RaggedFeature(tf.int64)}
    return tf.cast(tf.io.parse_example(serialized, spec)[example_format.ITEM_IDS], tf.int32)


def _sequences(files: Sequence[str]):
    """Every sequence of the files, one 1-D int32 tensor each, in a fixed order (files sorted)."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset(list(files), compression_type=example_format.COMPRESSION)
    return records.batch(256).map(plain_function(_parse_items), num_parallel_calls=tf.data.AUTOTUNE,
                                  deterministic=True).unbatch()


def num_windows(length, context: int):
    """How many windows ``tile_windows`` cuts from a sequence of ``length`` items (numpy or int):
    ceil((length - 1) / (context - 1)), every item but the first being a target once."""
    import numpy as np

    step = context - 1
    return (np.maximum(np.asarray(length) - 1, 0) + step - 1) // step


def tile_windows(items, context: int, shift):
    """Cuts one sequence into windows of at most ``context`` items that make every item but the
    first a next-item target exactly once; returns a ragged int32 [num_windows, None].

    Window k holds the items from the end of window k-1 (its last item, as input only) up to
    its own last target, so the targets tile the sequence. ``shift`` in [0, 1) moves the
    boundaries between windows (a different cut each epoch) without changing their number
    (``num_windows``, so an epoch's step count is fixed): the oldest window takes ``u`` more
    targets and the newest ``u`` fewer, where ``u`` ranges over the slack of the plain tiling
    (none when the targets fill the windows exactly; a history of one window is never cut).
    """
    import tensorflow as tf

    if context < 2:
        raise ValueError(f"context must be >= 2 (one input and one target), got {context}")
    step = context - 1
    n = tf.size(items, out_type=tf.int32)
    targets = tf.maximum(n - 1, 0)
    count = (targets + step - 1) // step
    oldest = targets - (count - 1) * step          # targets of the oldest window in the plain tiling
    slack = tf.maximum(step - oldest, 0)
    u = tf.cast(tf.floor(tf.cast(shift, tf.float32) * tf.cast(slack + 1, tf.float32)), tf.int32)
    u = tf.where(count >= 2, tf.minimum(u, slack), 0)
    inner_ends = 1 + oldest + u + step * tf.range(tf.maximum(count - 1, 0))
    ends = tf.concat([inner_ends, tf.reshape(n, [1])], 0)[:count]
    starts = tf.concat([[0], ends[:-1] - 1], 0)[:count]
    return tf.gather(items, tf.ragged.range(starts, ends))


def left_pad_to_longest(ragged, pad_id: int = ids.PAD_ID):
    """Ragged rows -> a dense [B, longest row] tensor, LEFT-padded (see ``left_pad``)."""
    import tensorflow as tf

    lengths = tf.cast(ragged.row_lengths(), tf.int32)
    width = tf.reduce_max(tf.concat([lengths, [1]], 0))
    right_padded = ragged.to_tensor(default_value=tf.cast(pad_id, ragged.dtype))
    right_padded = tf.pad(right_padded, [[0, 0], [0, width - tf.shape(right_padded)[1]]],
                          constant_values=tf.cast(pad_id, ragged.dtype))
    source = tf.range(width, dtype=tf.int32)[tf.newaxis, :] - (width - lengths)[:, tf.newaxis]
    gathered = tf.gather(right_padded, tf.maximum(source, 0), batch_dims=1)
    return tf.where(source >= 0, gathered, tf.cast(pad_id, ragged.dtype))


def window_stats(files: Union[str, Sequence[str]], context: int, holdout: int = 0) -> Dict[str, int]:
    """One pass over TFRecord files: ``{"sequences", "windows", "targets", "items"}`` of the
    windowed training data (each sequence without its last ``holdout`` items)."""
    import numpy as np
    import tensorflow as tf

    files = expand_file_patterns(files)
    spec = {example_format.ITEM_IDS: tf.io.RaggedFeature(tf.int64)}
    dataset = tf.data.TFRecordDataset(files, compression_type=example_format.COMPRESSION).batch(1024)
    dataset = dataset.map(plain_function(lambda s: tf.io.parse_example(s, spec)[example_format.ITEM_IDS].row_lengths()))
    stats = {"sequences": 0, "windows": 0, "targets": 0, "items": 0}
    for lengths in dataset:
        lengths = np.maximum(lengths.numpy() - holdout, 0)
        stats["sequences"] += int(lengths.size)
        stats["items"] += int(lengths.sum())
        stats["targets"] += int(np.maximum(lengths - 1, 0).sum())
        stats["windows"] += int(num_windows(lengths, context).sum())
    return stats


def window_training_dataset(files: Union[str, Sequence[str]], batch_size: int, context: int, seed: int = 0,
                            first_epoch: int = 0, last_epoch: int = 1, holdout: int = 0,
                            num_windows_per_epoch: Optional[int] = None, steps_per_epoch: Optional[int] = None,
                            shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, vocab_size: Optional[int] = None,
                            length_sorted_chunk: int = DEFAULT_LENGTH_SORTED_CHUNK):
    """Pretraining batches over whole histories: each epoch cuts every sequence (less its last
    ``holdout`` items, kept for leave-one-out evaluation) into ``tile_windows`` of ``context``
    items, with boundaries that move between epochs, and shuffles the windows.

    Every interaction but a user's first is a target exactly once per epoch. The order and the
    cuts depend only on ``(seed, epoch)``, so a resumed run sees the batches the uninterrupted
    run would have. ``length_sorted_chunk`` > 1: the shuffled windows are taken that many
    batches at a time, sorted by length and batched, and each batch is left-padded only to its
    longest window (a causal model gives the same outputs at any padding), so short histories
    stop paying for the context; 1 pads every batch to ``context``. Returns ``(dataset of
    {"item_ids": int32 [B, <= context]} left-padded, steps_per_epoch)``;
    ``num_windows_per_epoch`` (``window_stats``) gives one pass's steps.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if steps_per_epoch is None:
        if num_windows_per_epoch is None:
            raise ValueError("give num_windows_per_epoch (see window_stats) or steps_per_epoch")
        if int(num_windows_per_epoch) < 1:
            raise DataError("there are no training windows (every sequence has fewer than two items)")
        steps_per_epoch = -(-int(num_windows_per_epoch) // batch_size)
    files = expand_file_patterns(files)
    sequences = _sequences(files)
    if holdout:
        sequences = sequences.map(plain_function(lambda items: items[:tf.maximum(tf.size(items) - holdout, 0)]))

    def one_pass(epoch: int, index: int):
        pass_seed = (int(seed) * 1_000_003 + epoch * 1_009 + index) % (2**31 - 1)

        def cut(position, items):
            shift = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(pass_seed, tf.int64), position]))
            return tile_windows(items, context, shift)

        windows = sequences.enumerate().map(plain_function(cut), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        windows = windows.flat_map(plain_function(tf.data.Dataset.from_tensor_slices))
        windows = windows.shuffle(shuffle_buffer, seed=pass_seed, reshuffle_each_iteration=False)
        if length_sorted_chunk <= 1:
            return windows.ragged_batch(batch_size)
        # Windows of similar length share a batch, which is then padded only to its longest window;
        # chunks are whole batches, so the epoch still has ceil(windows / batch_size) batches.
        chunks = windows.ragged_batch(batch_size * length_sorted_chunk)
        by_length = chunks.map(plain_function(lambda chunk: tf.gather(chunk, tf.argsort(chunk.row_lengths(), stable=True))))
        batches = by_length.unbatch().ragged_batch(batch_size)
        return batches.shuffle(length_sorted_chunk, seed=pass_seed, reshuffle_each_iteration=False)

    batches_per_pass = (None if num_windows_per_epoch is None
                        else max(1, -(-int(num_windows_per_epoch) // batch_size)))
    batches = chain_epochs(one_pass, first_epoch, last_epoch, steps_per_epoch, batches_per_pass)

    def dense(ragged):
        padded = left_pad(ragged, context) if length_sorted_chunk <= 1 else left_pad_to_longest(ragged)
        return {"item_ids": check_ids_below(padded, vocab_size, "item")}

    parsed = batches.map(plain_function(dense), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    total = (last_epoch - first_epoch) * steps_per_epoch
    return parsed.apply(tf.data.experimental.assert_cardinality(total)).prefetch(tf.data.AUTOTUNE), steps_per_epoch


LEAVE_ONE_OUT_SPLITS = ("validation", "test")
MIN_LEAVE_ONE_OUT_ITEMS = 3  # a training item, the validation item and the test item


def leave_one_out_dataset(files: Union[str, Sequence[str]], batch_size: int, context: int, split: str,
                          vocab_size: Optional[int] = None):
    """Leave-one-out next-item evaluation over every user with at least three items:
    ``split="test"`` holds each user's whole sequence (its last item is the target),
    ``"validation"`` the sequence without its last item (the one before is the target).
    Yields ``{"item_ids": int32 [B, context]}``, left-padded, the target at the last position."""
    import tensorflow as tf

    if split not in LEAVE_ONE_OUT_SPLITS:
        raise ValueError(f"split must be one of {LEAVE_ONE_OUT_SPLITS}, got {split!r}")
    drop = 1 if split == "validation" else 0
    files = expand_file_patterns(files)
    records = tf.data.TFRecordDataset(files, compression_type=example_format.COMPRESSION)

    def batch_of(serialized):
        items = _parse_items(serialized)
        items = tf.ragged.boolean_mask(items, items.row_lengths() >= MIN_LEAVE_ONE_OUT_ITEMS)
        if drop:
            items = items[:, :-drop]
        return {"item_ids": check_ids_below(left_pad(items, context), vocab_size, "item")}

    batches = records.batch(batch_size).map(plain_function(batch_of), num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)
