"""Tests of whole-history pretraining data (trainer.windows) and leave-one-out evaluation
(trainer.windows.leave_one_out_dataset, trainer.leave_one_out)."""

import collections

import numpy as np
import pytest

import peterrec  # noqa: F401  (selects tf-keras before TensorFlow loads)
from peterrec.components import example_format, ids
from peterrec.trainer import data, tiny_examples, windows

CONTEXT = 5


@pytest.fixture(scope="module")
def histories(tmp_path_factory):
    """Examples of users with histories from 0 to 23 items (ids >= NUM_RESERVED), two shards."""
    root = str(tmp_path_factory.mktemp("histories"))
    rng = np.random.default_rng(3)
    sequences = {f"u{n:02d}": [int(x) for x in rng.integers(ids.NUM_RESERVED, 40, size=n)] for n in range(24)}
    examples = [example_format.make_example(user, items) for user, items in sequences.items()]
    files = tiny_examples.write_split_files(root, "train", examples, num_shards=2)
    return files, sequences


def _windows_of(dataset):
    """The real items of every window (padding stripped), in batch order."""
    rows = []
    for batch in dataset:
        for row in batch["item_ids"].numpy():
            rows.append([int(x) for x in row if x != ids.PAD_ID])
    return rows


@pytest.mark.parametrize("length", [0, 1, 2, 4, 5, 6, 9, 13, 23])
@pytest.mark.parametrize("shift", [0.0, 0.3, 0.99])
def test_windows_make_every_item_but_the_first_a_target_once(length, shift):
    items = np.arange(100, 100 + length, dtype=np.int32)
    cut = windows.tile_windows(items, CONTEXT, shift).to_list()
    targets = [item for window in cut for item in window[1:]]
    assert targets == list(range(101, 100 + length))
    assert all(2 <= len(w) <= CONTEXT for w in cut)
    assert len(cut) == int(windows.num_windows(length, CONTEXT))
    for before, after in zip(cut, cut[1:]):
        assert after[0] == before[-1]  # the previous window's last item is the next one's first input


def test_shift_moves_the_cuts_of_long_histories():
    items = np.arange(100, 112, dtype=np.int32)  # 11 targets in 3 windows of up to 4: slack to move
    cuts = {tuple(len(w) for w in windows.tile_windows(items, CONTEXT, shift).to_list()) for shift in (0.0, 0.5, 0.99)}
    assert len(cuts) > 1


def test_an_epoch_covers_every_target_once_and_moves_its_cuts(histories):
    files, sequences = histories
    stats = windows.window_stats(files, CONTEXT)
    assert stats["sequences"] == len(sequences)
    assert stats["targets"] == sum(max(len(s) - 1, 0) for s in sequences.values())
    dataset, steps = windows.window_training_dataset(files, 4, CONTEXT, seed=1, first_epoch=0, last_epoch=2,
                                                  num_windows_per_epoch=stats["windows"], vocab_size=40)
    assert steps == -(-stats["windows"] // 4)
    rows = _windows_of(dataset)
    per_epoch = len(rows) // 2
    assert len(rows) == 2 * stats["windows"] == 2 * per_epoch
    expected = collections.Counter((tuple(s[:j]), s[j]) for s in sequences.values() for j in range(1, len(s)))
    for epoch in (rows[:per_epoch], rows[per_epoch:]):
        # Each target once, predicted from a suffix of its own history that starts at a window cut.
        got = collections.Counter()
        for window in epoch:
            for j in range(1, len(window)):
                got[window[j]] += 1
        assert got == collections.Counter(target for (_, target) in expected.elements())
    assert sorted(map(tuple, rows[:per_epoch])) != sorted(map(tuple, rows[per_epoch:]))
    again, _ = windows.window_training_dataset(files, 4, CONTEXT, seed=1, first_epoch=1, last_epoch=2,
                                            num_windows_per_epoch=stats["windows"], vocab_size=40)
    assert _windows_of(again) == rows[per_epoch:]  # a resumed run sees the same epoch


def test_holdout_keeps_the_last_items_out_of_training(histories):
    files, sequences = histories
    stats = windows.window_stats(files, CONTEXT, holdout=2)
    assert stats["targets"] == sum(max(len(s) - 3, 0) for s in sequences.values())
    dataset, _ = windows.window_training_dataset(files, 8, CONTEXT, holdout=2, num_windows_per_epoch=stats["windows"])
    trained = collections.Counter(t for w in _windows_of(dataset) for t in w[1:])
    expected = collections.Counter(t for s in sequences.values() for t in s[1:-2])
    assert trained == expected


def test_leave_one_out_puts_the_target_last(histories):
    files, sequences = histories
    for split, drop in (("test", 0), ("validation", 1)):
        rows = _windows_of(windows.leave_one_out_dataset(files, 5, CONTEXT, split))
        expected = [s[:len(s) - drop][-CONTEXT:] for s in sequences.values() if len(s) >= 3]
        assert sorted(map(tuple, rows)) == sorted(map(tuple, expected))
    with pytest.raises(ValueError, match="split"):
        windows.leave_one_out_dataset(files, 5, CONTEXT, "train")


def test_leave_one_out_model_scores_only_the_last_position(histories):
    import tensorflow as tf

    from peterrec.trainer.backbone import NextItNetBackbone
    from peterrec.trainer.leave_one_out import evaluate_leave_one_out
    from peterrec.trainer.objectives import make_objective

    files, sequences = histories
    backbone = NextItNetBackbone(vocab_size=40, embedding_dim=8, dilations=(1, 2), name="bb").ensure_built()
    figures = evaluate_leave_one_out(backbone, files, CONTEXT, "test", batch_size=3)
    objective = make_objective(backbone)
    batch = np.array([([ids.PAD_ID] * CONTEXT + s)[-CONTEXT:] for s in sequences.values() if len(s) >= 3], np.int32)
    logits = objective.last_item_logits(backbone, tf.constant(batch)).numpy()
    targets = batch[:, -1]
    log_probs = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    ranks = 1 + (logits > logits[np.arange(len(targets)), targets][:, None]).sum(1)
    assert figures["users"] == len(batch)
    assert figures["loss"] == pytest.approx(-log_probs[np.arange(len(targets)), targets].mean(), rel=1e-4)
    assert figures["hr@10"] == pytest.approx(np.mean(ranks <= 10), abs=1e-6)
    assert figures["mrr@10"] == pytest.approx(np.mean(np.where(ranks <= 10, 1.0 / ranks, 0.0)), abs=1e-6)


def test_length_sorted_batches_hold_the_same_windows_padded_to_their_longest(histories):
    files, _ = histories
    stats = windows.window_stats(files, CONTEXT)
    kwargs = dict(seed=2, num_windows_per_epoch=stats["windows"])
    plain, steps = windows.window_training_dataset(files, 3, CONTEXT, length_sorted_chunk=1, **kwargs)
    sorted_, sorted_steps = windows.window_training_dataset(files, 3, CONTEXT, length_sorted_chunk=4, **kwargs)
    assert steps == sorted_steps
    assert all(batch["item_ids"].shape[1] == CONTEXT for batch in plain)
    widths = []
    for batch in sorted_:
        item_ids = batch["item_ids"].numpy()
        widths.append(item_ids.shape[1])
        assert (item_ids[:, -1] != ids.PAD_ID).all() and (item_ids[:, 0] != ids.PAD_ID).any()
    assert min(widths) < CONTEXT and len(widths) == steps
    assert sorted(map(tuple, _windows_of(plain))) == sorted(map(tuple, _windows_of(sorted_)))


def test_left_pad_to_longest_matches_left_pad_at_that_width():
    import tensorflow as tf

    ragged = tf.ragged.constant([[5, 6, 7], [8], [9, 10]], dtype=tf.int32)
    np.testing.assert_array_equal(windows.left_pad_to_longest(ragged).numpy(), data.left_pad(ragged, 3).numpy())
