"""tf.data input pipelines over the sequence examples (ARCHITECTURE.md contract 1).

Every pipeline reads the GZIP TFRecords of one split in parallel, parses whole batches with
``example_format.feature_spec`` (list features come back ragged) and turns the item lists into
a dense ``int32 [B, max_len]`` tensor that is LEFT-padded with ``PAD_ID`` and keeps the most
recent ``max_len`` items (METHOD.md section 5, defect 2: the last position is always the last
real item). Three flavours:

- pretraining (``kind=None``): ``{"item_ids"}``;
- classification: ``{"item_ids", "label"}`` (``label`` int32 [B]);
- cold-start: ``{"item_ids", "target_item_ids"}`` (int32 [B, Tt], right-padded with PAD_ID,
  oldest target first).

``as_supervised`` turns the task flavours into Keras ``(features, target)`` pairs.
"""

import os
from typing import Dict, List, Optional, Sequence, Union

from peterrec.components import example_format, ids

KINDS = (None, "classification", "cold_start")
DEFAULT_SHUFFLE_BUFFER = 10_000
DEFAULT_LENGTH_SORTED_CHUNK = 32  # batches sorted by window length together (1: no sorting)


class DataError(ValueError):
    """The examples cannot be read as asked (no files, wrong kind, ids outside the vocabulary)."""


def _plain(function):
    """Marks a tf.data function as plain TensorFlow (no data-dependent Python control flow), so
    tf.data traces it directly instead of running AutoGraph's slow source conversion first."""
    import tensorflow as tf

    return tf.autograph.experimental.do_not_convert(function)


def split_files(examples_root: str, split: str) -> List[str]:
    """Returns the TFRecord files of one split of an Examples folder (``Split-<name>/``)."""
    import tensorflow as tf

    pattern = example_format.split_file_pattern(examples_root, split)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        # TFX Examples artifacts may name their files differently: accept any file in the split.
        files = sorted(f for f in tf.io.gfile.glob(os.path.join(example_format.split_dir(examples_root, split), "*"))
                       if not tf.io.gfile.isdir(f))
    if not files:
        raise DataError(f"no TFRecord files for split {split!r} under {examples_root} "
                        f"(expected {pattern})")
    return files


def expand_file_patterns(patterns: Union[str, Sequence[str]]) -> List[str]:
    """Expands file patterns or folders (TFX ``fn_args.train_files`` style) into sorted files."""
    import tensorflow as tf

    if isinstance(patterns, str):
        patterns = [patterns]
    files: List[str] = []
    for pattern in patterns:
        if tf.io.gfile.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        files.extend(f for f in tf.io.gfile.glob(pattern) if not tf.io.gfile.isdir(f))
    if not files:
        raise DataError(f"no files match {list(patterns)}")
    return sorted(set(files))


def left_pad(ragged, max_len: int, pad_id: int = ids.PAD_ID):
    """Turns ragged rows into a dense [B, max_len] tensor, LEFT-padded, keeping the last items.

    Rows longer than ``max_len`` keep their most recent ``max_len`` values; shorter rows get
    ``pad_id`` in front, so position ``max_len - 1`` always holds a row's last value.
    """
    import tensorflow as tf

    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    recent = ragged[:, -max_len:]
    lengths = tf.cast(recent.row_lengths(), tf.int32)
    right_padded = recent.to_tensor(default_value=tf.cast(pad_id, recent.dtype), shape=[None, max_len])
    # Position j of a row of length n holds item j - (max_len - n), or padding if that is < 0.
    source = tf.range(max_len, dtype=tf.int32)[tf.newaxis, :] - (max_len - lengths)[:, tf.newaxis]
    gathered = tf.gather(right_padded, tf.maximum(source, 0), batch_dims=1)
    return tf.where(source >= 0, gathered, tf.cast(pad_id, recent.dtype))


def right_pad(ragged, max_len: Optional[int] = None, pad_id: int = ids.PAD_ID):
    """Turns ragged rows into a dense right-padded tensor (width ``max_len`` or the longest row)."""
    import tensorflow as tf

    if max_len is not None:
        ragged = ragged[:, :max_len]
        return ragged.to_tensor(default_value=tf.cast(pad_id, ragged.dtype), shape=[None, max_len])
    return ragged.to_tensor(default_value=tf.cast(pad_id, ragged.dtype))


def _check_ids_below(values, limit: Optional[int], what: str):
    """Fails the pipeline with a clear message when an id is outside [0, limit)."""
    import tensorflow as tf

    if limit is None:
        return values
    checks = [
        tf.debugging.assert_less(
            values, tf.cast(limit, values.dtype),
            message=(f"{what} id >= {limit} (the vocabulary size the model was built with): the "
                     "examples were built with another vocabulary")),
        tf.debugging.assert_non_negative(values, message=f"negative {what} id in the examples"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(values)


def parse_batch(serialized, max_len: int, kind: Optional[str] = None, max_targets: Optional[int] = None,
                vocab_size: Optional[int] = None, num_outputs: Optional[int] = None,
                keep_user_id: bool = False) -> Dict[str, object]:
    """Parses a batch of serialized examples into the dense dict described in the module doc."""
    import tensorflow as tf

    if kind not in KINDS:
        raise DataError(f"kind must be one of {KINDS}, got {kind!r}")
    spec = example_format.feature_spec(with_label=kind == "classification", with_targets=kind == "cold_start")
    parsed = tf.io.parse_example(serialized, spec)
    item_ids = left_pad(parsed[example_format.ITEM_IDS], max_len)
    features: Dict[str, object] = {"item_ids": _check_ids_below(tf.cast(item_ids, tf.int32), vocab_size, "item")}
    if kind == "classification":
        label = tf.cast(parsed[example_format.LABEL], tf.int32)
        features["label"] = _check_ids_below(label, num_outputs, "label")
    elif kind == "cold_start":
        targets = tf.cast(right_pad(parsed[example_format.TARGET_ITEM_IDS], max_targets), tf.int32)
        features["target_item_ids"] = _check_ids_below(targets, num_outputs, "target item")
    if keep_user_id:
        features["user_id"] = parsed[example_format.USER_ID]
    return features


def dataset_from_files(files: Union[str, Sequence[str]], batch_size: int, max_len: int,
                       kind: Optional[str] = None, shuffle: bool = False, seed: int = 0,
                       repeat: bool = False, max_targets: Optional[int] = None,
                       vocab_size: Optional[int] = None, num_outputs: Optional[int] = None,
                       keep_user_id: bool = False, drop_remainder: bool = False,
                       shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, num_examples: Optional[int] = None):
    """Builds the batched, parsed, prefetched dataset over TFRecord files or file patterns.

    ``vocab_size`` / ``num_outputs``, when given, make the pipeline fail with a clear error on
    an item (label, target) id outside the model's vocabulary. ``num_examples`` (see
    ``count_examples``) declares the number of batches, so Keras shows progress with a total
    and counts exactly one optimizer step per batch.
    """
    import tensorflow as tf

    if kind not in KINDS:
        raise DataError(f"kind must be one of {KINDS}, got {kind!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    files = expand_file_patterns(files)
    file_ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        file_ds = file_ds.shuffle(len(files), seed=seed)
    records = file_ds.interleave(
        _plain(lambda path: tf.data.TFRecordDataset(path, compression_type=example_format.COMPRESSION)),
        cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    batches = records.batch(batch_size, drop_remainder=drop_remainder)
    parsed = batches.map(
        _plain(lambda serialized: parse_batch(serialized, max_len, kind, max_targets, vocab_size, num_outputs,
                                              keep_user_id)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if num_examples is not None and not repeat:
        batches_per_pass = num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)
        parsed = parsed.apply(tf.data.experimental.assert_cardinality(batches_per_pass))
    return parsed.prefetch(tf.data.AUTOTUNE)


def training_dataset(files: Union[str, Sequence[str]], batch_size: int, max_len: int, kind: Optional[str] = None,
                     seed: int = 0, first_epoch: int = 0, last_epoch: int = 1, num_examples: Optional[int] = None,
                     steps_per_epoch: Optional[int] = None, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                     **parse_options):
    """The training batches of epochs ``first_epoch`` .. ``last_epoch - 1``, one after another.

    Each epoch's order depends only on ``(seed, epoch)``, never on how many epochs this process
    has already run, so a run resumed after an interruption sees exactly the batches the
    uninterrupted run would have seen (and iterating the dataset again gives the same batches).
    Returns ``(dataset, steps_per_epoch)``: every epoch has
    ``steps_per_epoch`` batches (default: one pass, which needs ``num_examples``; a larger value
    repeats the epoch's data, reshuffled), ready for ``fit(steps_per_epoch=...)``.
    """
    import tensorflow as tf

    if kind not in KINDS:
        raise DataError(f"kind must be one of {KINDS}, got {kind!r}")
    if steps_per_epoch is None:
        if num_examples is None:
            raise ValueError("give num_examples (see count_examples) or steps_per_epoch")
        if int(num_examples) < 1:
            raise DataError("there are no training examples")
        steps_per_epoch = -(-int(num_examples) // batch_size)
    files = expand_file_patterns(files)
    batches_per_pass = None if num_examples is None else max(1, -(-int(num_examples) // batch_size))

    def one_pass(epoch: int, index: int):
        # tf.data takes only Python seeds, so each pass is its own pipeline with its own seed, and
        # no shuffle reshuffles per iteration: Keras may iterate a dataset more than once (it
        # recreates the iterator when the cardinality equals steps_per_epoch).
        pass_seed = (int(seed) * 1_000_003 + epoch * 1_009 + index) % (2**31 - 1)
        names = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=pass_seed,
                                                                  reshuffle_each_iteration=False)
        records = names.interleave(
            _plain(lambda path: tf.data.TFRecordDataset(path, compression_type=example_format.COMPRESSION)),
            cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return records.shuffle(shuffle_buffer, seed=pass_seed, reshuffle_each_iteration=False).batch(batch_size)

    batches = _epochs(one_pass, first_epoch, last_epoch, steps_per_epoch, batches_per_pass)
    parsed = batches.map(_plain(lambda serialized: parse_batch(serialized, max_len, kind, **parse_options)),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    total = max(0, last_epoch - first_epoch) * steps_per_epoch
    return parsed.apply(tf.data.experimental.assert_cardinality(total)).prefetch(tf.data.AUTOTUNE), steps_per_epoch


def _epochs(one_pass, first_epoch: int, last_epoch: int, steps_per_epoch: int, batches_per_pass: Optional[int]):
    """The batches of epochs ``first_epoch`` .. ``last_epoch - 1``, each exactly ``steps_per_epoch``
    long: ``one_pass(epoch, index)`` gives one seeded pass over the data; an epoch chains as many
    passes as it needs (or repeats the first when the pass size is unknown)."""
    def one_epoch(epoch: int):
        if batches_per_pass is None:  # unknown size: repeat one order until the epoch is full
            return one_pass(epoch, 0).repeat().take(steps_per_epoch)
        passes = [one_pass(epoch, index) for index in range(-(-steps_per_epoch // batches_per_pass))]
        chained = passes[0]
        for extra in passes[1:]:
            chained = chained.concatenate(extra)
        return chained.take(steps_per_epoch)

    epochs = list(range(first_epoch, max(first_epoch, last_epoch)))
    if not epochs:
        raise ValueError(f"no epochs between {first_epoch} and {last_epoch}")
    batches = one_epoch(epochs[0])
    for epoch in epochs[1:]:
        batches = batches.concatenate(one_epoch(epoch))
    return batches


def sequence_dataset(examples_root: str, split: str, batch_size: int, max_len: int,
                     kind: Optional[str] = None, shuffle: bool = False, seed: int = 0,
                     repeat: bool = False, **kwargs):
    """Dataset of one split of an Examples folder (see ``dataset_from_files`` for the options).

    Yields ``{"item_ids": int32 [B, max_len]}`` (left-padded with PAD_ID, most recent items
    kept) plus ``"label": int32 [B]`` for ``kind="classification"`` or
    ``"target_item_ids": int32 [B, Tt]`` for ``kind="cold_start"``.
    """
    return dataset_from_files(split_files(examples_root, split), batch_size, max_len, kind=kind,
                              shuffle=shuffle, seed=seed, repeat=repeat, **kwargs)


def as_supervised(dataset, kind: str):
    """Maps task batches to Keras ``({"item_ids"}, target)`` pairs (label or target_item_ids)."""
    if kind == "classification":
        key = "label"
    elif kind == "cold_start":
        key = "target_item_ids"
    else:
        raise DataError(f"as_supervised needs a task kind, got {kind!r}")
    return dataset.map(_plain(lambda batch: ({"item_ids": batch["item_ids"]}, batch[key])))


def count_examples(files: Union[str, Sequence[str]]) -> int:
    """Counts the records in TFRecord files (one cheap pass; for steps and progress output)."""
    import tensorflow as tf

    files = expand_file_patterns(files)
    dataset = tf.data.TFRecordDataset(files, compression_type=example_format.COMPRESSION)
    return int(dataset.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1).numpy())


def sequence_stats(files: Union[str, Sequence[str]], max_len: int) -> Dict[str, int]:
    """One pass over TFRecord files: ``{"examples", "positions"}``, where positions counts the
    items a model sees per epoch (each sequence truncated to its most recent ``max_len``)."""
    import tensorflow as tf

    files = expand_file_patterns(files)
    spec = {example_format.ITEM_IDS: tf.io.RaggedFeature(tf.int64)}
    dataset = tf.data.TFRecordDataset(files, compression_type=example_format.COMPRESSION).batch(1024)
    dataset = dataset.map(_plain(lambda s: tf.minimum(tf.io.parse_example(s, spec)[example_format.ITEM_IDS]
                                                      .row_lengths(), max_len)))
    examples, positions = 0, 0
    for lengths in dataset:
        examples += int(lengths.shape[0])
        positions += int(tf.reduce_sum(lengths))
    return {"examples": examples, "positions": positions}



# ----------------------------------------------------------------------------- whole histories


def _parse_items(serialized):
    """A batch of serialized examples -> their item ids, ragged int32 [B, None] (oldest first)."""
    import tensorflow as tf

    spec = {example_format.ITEM_IDS: tf.io.RaggedFeature(tf.int64)}
    return tf.cast(tf.io.parse_example(serialized, spec)[example_format.ITEM_IDS], tf.int32)


def _sequences(files: Sequence[str]):
    """Every sequence of the files, one 1-D int32 tensor each, in a fixed order (files sorted)."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset(list(files), compression_type=example_format.COMPRESSION)
    return records.batch(256).map(_plain(_parse_items), num_parallel_calls=tf.data.AUTOTUNE,
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
    dataset = dataset.map(_plain(lambda s: tf.io.parse_example(s, spec)[example_format.ITEM_IDS].row_lengths()))
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
        sequences = sequences.map(_plain(lambda items: items[:tf.maximum(tf.size(items) - holdout, 0)]))

    def one_pass(epoch: int, index: int):
        pass_seed = (int(seed) * 1_000_003 + epoch * 1_009 + index) % (2**31 - 1)

        def cut(position, items):
            shift = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(pass_seed, tf.int64), position]))
            return tile_windows(items, context, shift)

        windows = sequences.enumerate().map(_plain(cut), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        windows = windows.flat_map(_plain(tf.data.Dataset.from_tensor_slices))
        windows = windows.shuffle(shuffle_buffer, seed=pass_seed, reshuffle_each_iteration=False)
        if length_sorted_chunk <= 1:
            return windows.ragged_batch(batch_size)
        # Windows of similar length share a batch, which is then padded only to its longest window;
        # chunks are whole batches, so the epoch still has ceil(windows / batch_size) batches.
        chunks = windows.ragged_batch(batch_size * length_sorted_chunk)
        by_length = chunks.map(_plain(lambda chunk: tf.gather(chunk, tf.argsort(chunk.row_lengths(), stable=True))))
        batches = by_length.unbatch().ragged_batch(batch_size)
        return batches.shuffle(length_sorted_chunk, seed=pass_seed, reshuffle_each_iteration=False)

    batches_per_pass = (None if num_windows_per_epoch is None
                        else max(1, -(-int(num_windows_per_epoch) // batch_size)))
    batches = _epochs(one_pass, first_epoch, last_epoch, steps_per_epoch, batches_per_pass)

    def dense(ragged):
        padded = left_pad(ragged, context) if length_sorted_chunk <= 1 else left_pad_to_longest(ragged)
        return {"item_ids": _check_ids_below(padded, vocab_size, "item")}

    parsed = batches.map(_plain(dense), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
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
        return {"item_ids": _check_ids_below(left_pad(items, context), vocab_size, "item")}

    batches = records.batch(batch_size).map(_plain(batch_of), num_parallel_calls=tf.data.AUTOTUNE,
                                            deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)
