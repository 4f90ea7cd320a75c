"""tf.data input pipelines over the sequence examples (docs/architecture.md contract 1).

Every pipeline reads the GZIP TFRecords of one split in parallel, parses whole batches with
``example_format.feature_spec`` (list features come back ragged) and turns the item lists into
a dense ``int32 [B, max_len]`` tensor that is LEFT-padded with ``PAD_ID`` and keeps the most
recent ``max_len`` items (docs/method.md section 5, defect 2: the last position is always the last
real item). Three flavours:

- pretraining (``kind=None``): ``{"item_ids"}``;
- classification: ``{"item_ids", "label"}`` (``label`` int32 [B]);
- cold-start: ``{"item_ids", "target_item_ids"}`` (int32 [B, Tt], right-padded with PAD_ID,
  oldest target first).

``as_supervised`` turns the task flavours into Keras ``(features, target)`` pairs. Whole
histories cut into windows of the model's context (pretraining, leave-one-out evaluation) are
``peterrec.trainer.windows``.
"""

import os
from typing import Dict, List, Optional, Sequence, Union

from peterrec.components import example_format, ids

KINDS = (None, "classification", "cold_start")
DEFAULT_SHUFFLE_BUFFER = 10_000


class DataError(ValueError):
    """The examples cannot be read as asked (no files, wrong kind, ids outside the vocabulary)."""


def plain_function(function):
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


def check_ids_below(values, limit: Optional[int], what: str):
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
    features: Dict[str, object] = {"item_ids": check_ids_below(tf.cast(item_ids, tf.int32), vocab_size, "item")}
    if kind == "classification":
        label = tf.cast(parsed[example_format.LABEL], tf.int32)
        features["label"] = check_ids_below(label, num_outputs, "label")
    elif kind == "cold_start":
        targets = tf.cast(right_pad(parsed[example_format.TARGET_ITEM_IDS], max_targets), tf.int32)
        features["target_item_ids"] = check_ids_below(targets, num_outputs, "target item")
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
        plain_function(lambda path: tf.data.TFRecordDataset(path, compression_type=example_format.COMPRESSION)),
        cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if shuffle:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    batches = records.batch(batch_size, drop_remainder=drop_remainder)
    parsed = batches.map(
        plain_function(lambda serialized: parse_batch(serialized, max_len, kind, max_targets, vocab_size, num_outputs,
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
            plain_function(lambda path: tf.data.TFRecordDataset(path, compression_type=example_format.COMPRESSION)),
            cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return records.shuffle(shuffle_buffer, seed=pass_seed, reshuffle_each_iteration=False).batch(batch_size)

    batches = chain_epochs(one_pass, first_epoch, last_epoch, steps_per_epoch, batches_per_pass)
    parsed = batches.map(plain_function(lambda serialized: parse_batch(serialized, max_len, kind, **parse_options)),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    total = max(0, last_epoch - first_epoch) * steps_per_epoch
    return parsed.apply(tf.data.experimental.assert_cardinality(total)).prefetch(tf.data.AUTOTUNE), steps_per_epoch


def chain_epochs(one_pass, first_epoch: int, last_epoch: int, steps_per_epoch: int,
                 batches_per_pass: Optional[int]):
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
    return dataset.map(plain_function(lambda batch: ({"item_ids": batch["item_ids"]}, batch[key])))


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
    dataset = dataset.map(plain_function(lambda s: tf.minimum(tf.io.parse_example(s, spec)[example_format.ITEM_IDS]
                                                      .row_lengths(), max_len)))
    examples, positions = 0, 0
    for lengths in dataset:
        examples += int(lengths.shape[0])
        positions += int(tf.reduce_sum(lengths))
    return {"examples": examples, "positions": positions}
