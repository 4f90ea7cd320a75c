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
    return fn.extract_output(fn.merge_accumulators(accumulators))


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
    history = beam_steps.to_history(("u", _combine(fn, [events])), (("train", 1.0),), "")
    assert history.split == "train" and history.kept == 4 and history.truncated == 16
    assert list(history.items) == [e[4] for e in sorted(events)[-4:]]
    assert beam_steps.history_stats(history) == {"kept": 4, "truncated": 16, "filtered": 0, "users": 1,
                                                 "users/train": 1}


def test_sum_dicts():
    fn = beam_steps.SumDictsFn()
    merged = fn.merge_accumulators([fn.add_input(fn.create_accumulator(), {"a": 1, "b": 2}),
                                    fn.add_input(fn.create_accumulator(), {"a": 3})])
    assert fn.extract_output(merged) == {"a": 4, "b": 2}
