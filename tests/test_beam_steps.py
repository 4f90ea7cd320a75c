"""Beam steps: the per-user combiner keeps the latest events whatever the merge order."""

import random

from peterrec.components import beam_steps


def _events(n, seed=0):
    rng = random.Random(seed)
    return [(rng.randint(0, 5), rng.randint(0, 1), line, 0, f"i{line}", rng.choice(["a", "b", "c"]))
            for line in range(n)]


def _combine(fn, parts):
    accumulators = []
    for part in parts:
        accumulator = fn.create_accumulator()
        for event in part:
            accumulator = fn.add_input(accumulator, event)
        accumulators.append(fn.compact(accumulator))
    total, filtered, buckets = fn.extract_output(fn.merge_accumulators(accumulators))
    return total, filtered, {bucket: columns.events() for bucket, columns in buckets.items()}


def test_latest_events_kept_in_order_whatever_the_partition():
    events = _events(300)
    fn = beam_steps.SequenceCombineFn({"source": 7})
    expected = (300, 0, {"source": sorted(events)[-7:]})
    for seed in range(5):
        shuffled = list(events)
        random.Random(seed).shuffle(shuffled)
        cut = sorted(random.Random(seed).sample(range(1, 300), 3))
        parts = [shuffled[a:b] for a, b in zip([0] + cut, cut + [300])]
        assert _combine(fn, parts) == expected


def test_domain_buckets_and_filtered_counts():
    events = _events(100, seed=1)
    fn = beam_steps.SequenceCombineFn({"source": 3, "target": None}, {"a": "source", "b": "target"},
                                      default_bucket=None)
    total, filtered, buckets = _combine(fn, [events[:50], events[50:]])
    assert total == 100 and filtered == sum(1 for e in events if e[5] == "c")
    assert buckets["source"] == sorted(e for e in events if e[5] == "a")[-3:]
    assert buckets["target"] == sorted(e for e in events if e[5] == "b")


def test_history_counts_truncation():
    events = _events(20, seed=2)
    fn = beam_steps.SequenceCombineFn({"source": 4})
    accumulator = fn.create_accumulator()
    for event in events:
        fn.add_input(accumulator, event)
    history = beam_steps.to_history(("u", fn.extract_output(accumulator)), (("train", 1.0),), "")
    assert history.split == "train" and history.kept == 4 and history.truncated == 16
    assert list(history.items) == [e[4] for e in sorted(events)[-4:]]
    assert beam_steps.history_stats(history) == {"kept": 4, "truncated": 16, "filtered": 0, "users": 1,
                                                 "users/train": 1}


def test_sum_dicts():
    fn = beam_steps.SumDictsFn()
    merged = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), {"a": 1, "b": 2}),
                                    fn.add_input(fn.create_accumulator(), {"a": 3})])
    assert fn.extract_output(merged) == {"a": 4, "b": 2}


def _long_history(n, distinct_items=500):
    """A user's n events as the readers emit them (every item string a fresh object)."""
    return ((1_000_000 + (line * 7919) % n, 0, line, 0, "item" + str(line % distinct_items), "source")
            for line in range(n))


def test_whole_history_accumulator_is_compact():
    """Without a cap the accumulator holds 32 bytes an event (+ each distinct item once), not tuples.

    As tuples the same history held about 250 bytes an event (tracemalloc, the code before).
    """
    import pickle
    import tracemalloc

    n = 200_000
    fn = beam_steps.SequenceCombineFn({"source": None})
    tracemalloc.start()
    try:
        accumulator = fn.create_accumulator()
        for event in _long_history(n):
            fn.add_input(accumulator, event)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 40 * n + 200_000
    assert len(pickle.dumps(accumulator)) < 40 * n + 200_000  # what crosses the shuffle
    halves = [fn.compact(accumulator), fn.create_accumulator()]
    total, _, buckets = fn.extract_output(fn.merge_accumulators(halves))
    assert total == n and len(buckets["source"]) == n and len(buckets["source"].items) == 500
    assert list(buckets["source"].timestamp_values()) == sorted(e[0] for e in _long_history(n))


def test_capped_accumulator_stays_bounded_by_the_cap():
    """With max_len the accumulator never holds more than 2 * max_len + 16 events, whatever the history."""
    fn = beam_steps.SequenceCombineFn({"source": 50})
    accumulator = fn.create_accumulator()
    largest = 0
    for event in _long_history(100_000, distinct_items=100_000):
        fn.add_input(accumulator, event)
        largest = max(largest, len(accumulator[2]["source"]), len(accumulator[2]["source"].items))
    assert largest <= 2 * 50 + 16
    history = beam_steps.to_history(("u", fn.extract_output(accumulator)), (("train", 1.0),), "")
    expected = sorted(_long_history(100_000, distinct_items=100_000))[-50:]
    assert history.items == tuple(e[4] for e in expected) and history.truncated == 100_000 - 50


def test_columns_pickle_and_merge_keep_strings_and_order():
    import pickle

    from peterrec.components.event_columns import EventColumns, merge

    a = EventColumns.of([(5, 0, 1, 0, "x", "d1"), (1, 0, 2, 0, "y", None)])
    b = pickle.loads(pickle.dumps(EventColumns.of([(3, 1, 1, 0, "y", "d1"), (3, 0, 9, 1, "z", "d2")])))
    assert merge([a, b]).sorted().events() == [(1, 0, 2, 0, "y", None), (3, 0, 9, 1, "z", "d2"),
                                               (3, 1, 1, 0, "y", "d1"), (5, 0, 1, 0, "x", "d1")]
