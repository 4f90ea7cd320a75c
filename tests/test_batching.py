"""The batcher: merging, padding, splitting, concurrency, isolation of failures.

Threads are ordered by barriers, events and waits on the batcher's queue (with timeouts), never
by sleeping, so a loaded machine cannot change what a test sees.
"""

import threading
import time

import numpy as np
import pytest

from peterrec.serving import errors
from peterrec.serving.batching import (Batcher, BatchingOptions, merge_inputs, pad_to_allowed_size, rows_of,
                                       split_outputs)


def _strings(rows):
    array = np.empty((len(rows), max(len(r) for r in rows)), dtype=object)
    array[:] = b""
    for i, row in enumerate(rows):
        array[i, : len(row)] = [item.encode() for item in row]
    return array


def test_merge_pads_strings_and_numbers_and_split_gives_rows_back():
    a = {"items": _strings([["a", "b", "c"]]), "n": np.array([[1, 2, 3]])}
    b = {"items": _strings([["d"], ["e", "f"]]), "n": np.array([[4], [5]])}
    merged = merge_inputs([a, b])
    assert merged["items"].tolist() == [[b"a", b"b", b"c"], [b"d", b"", b""], [b"e", b"f", b""]]
    assert merged["n"].tolist() == [[1, 2, 3], [4, 0, 0], [5, 0, 0]]
    parts = split_outputs({"x": np.arange(3)}, [1, 2])
    assert [p["x"].tolist() for p in parts] == [[0], [1, 2]]


def test_split_refuses_outputs_without_a_batch_dimension():
    with pytest.raises(errors.ServingError, match="cannot be batched"):
        split_outputs({"x": np.arange(4)}, [1, 2])


def test_rows_of_checks_the_batch_dimension():
    assert rows_of({"a": np.zeros((3, 2)), "b": np.zeros(3)}) == 3
    with pytest.raises(ValueError):
        rows_of({"a": np.zeros((3, 2)), "b": np.zeros(2)})


def _eventually(condition, timeout=10.0):
    """Waits until ``condition()`` holds; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the other threads"
        time.sleep(0.001)


def _hold_until_the_others_queue(batcher, total_rows):
    """A hook for a model's first call: it returns once every other request waits in the queue,
    so the requests that follow are certain to queue behind a busy model."""
    def hold(first_batch_rows):
        _eventually(lambda: batcher.queued_rows("key") == total_rows - first_batch_rows)
    return hold


class _Model:
    """Echoes each row's first item and its length; counts calls and remembers batch sizes.

    ``hold_first(rows)`` runs inside the first call (to keep the model busy until a condition holds).
    """

    def __init__(self, fail_on=None, hold_first=None):
        self.fail_on = fail_on
        self.hold_first = hold_first
        self.batch_rows = []
        self.lock = threading.Lock()

    def __call__(self, inputs):
        items = inputs["items"]
        with self.lock:
            self.batch_rows.append(items.shape[0])
            first = len(self.batch_rows) == 1
        if first and self.hold_first is not None:
            self.hold_first(items.shape[0])
        if self.fail_on is not None and (items == self.fail_on).any():
            raise errors.invalid_argument(f"cannot take {self.fail_on!r}")
        return {"first": items[:, 0].copy(), "length": (items != b"").sum(axis=1)}


def _run_concurrently(batcher, model, requests):
    results, failures = [None] * len(requests), [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def call(index):
        barrier.wait()
        try:
            results[index] = batcher.run("key", model, requests[index])
        except Exception as error:  # collected for the asserts
            failures[index] = error

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, failures


def _requests(count):
    # Request i has 1 + i % 3 rows of different lengths; row j starts with "r{i}-{j}".
    return [
        {"items": _strings([[f"r{i}-{j}"] + ["x"] * (j + i % 4) for j in range(1 + i % 3)])}
        for i in range(count)
    ]


def _total_rows(requests):
    return sum(request["items"].shape[0] for request in requests)


def _check_own_rows(requests, results):
    for request, result in zip(requests, results):
        assert result["first"].tolist() == request["items"][:, 0].tolist()
        assert result["length"].tolist() == (request["items"] != b"").sum(axis=1).tolist()


def test_concurrent_requests_share_model_calls_and_get_their_own_rows():
    requests = _requests(12)
    # The batch closes when full: exactly when every request has arrived (the timeout is a safety net).
    batcher = Batcher(BatchingOptions(max_batch_size=_total_rows(requests), batch_timeout_micros=60_000_000,
                                      num_batch_threads=1))
    model = _Model()
    results, failures = _run_concurrently(batcher, model, requests)
    assert failures == [None] * 12
    assert model.batch_rows == [_total_rows(requests)]
    _check_own_rows(requests, results)
    assert batcher.stats.snapshot()["calls"] == len(model.batch_rows)


def test_batches_never_exceed_max_batch_size():
    batcher = Batcher(BatchingOptions(max_batch_size=4, batch_timeout_micros=100_000, num_batch_threads=1))
    model = _Model()
    requests = _requests(10)
    results, failures = _run_concurrently(batcher, model, requests)
    assert failures == [None] * 10
    assert max(model.batch_rows) <= 4
    _check_own_rows(requests, results)


def test_without_timeout_requests_that_queue_behind_a_busy_model_are_merged():
    batcher = Batcher(BatchingOptions(max_batch_size=32, batch_timeout_micros=0, num_batch_threads=1))
    requests = _requests(8)
    model = _Model(hold_first=_hold_until_the_others_queue(batcher, _total_rows(requests)))
    results, failures = _run_concurrently(batcher, model, requests)
    assert failures == [None] * 8
    assert len(model.batch_rows) <= 2  # the first call, then everything that queued behind it
    _check_own_rows(requests, results)


def test_a_failing_request_does_not_fail_its_batch_neighbours():
    requests = _requests(6)
    requests[3] = {"items": _strings([["poison"]])}
    batcher = Batcher(BatchingOptions(max_batch_size=_total_rows(requests), batch_timeout_micros=60_000_000,
                                      num_batch_threads=1))
    model = _Model(fail_on=b"poison")
    results, failures = _run_concurrently(batcher, model, requests)
    assert model.batch_rows[0] == _total_rows(requests)  # they did share the failing call
    assert isinstance(failures[3], errors.ServingError) and "poison" in failures[3].message
    assert [f for i, f in enumerate(failures) if i != 3] == [None] * 5
    _check_own_rows([r for i, r in enumerate(requests) if i != 3], [r for i, r in enumerate(results) if i != 3])


def test_without_padding_only_same_shapes_share_a_batch():
    batcher = Batcher(BatchingOptions(max_batch_size=64, batch_timeout_micros=0, num_batch_threads=1,
                                      pad_variable_length_inputs=False))
    requests = [{"items": _strings([["a"] * (1 + i % 2)])} for i in range(6)]
    hold = _hold_until_the_others_queue(batcher, len(requests))
    seen = []

    def model(inputs):
        seen.append(inputs["items"].shape[1])
        if len(seen) == 1:
            hold(inputs["items"].shape[0])
        return {"first": inputs["items"][:, 0].copy()}

    results, failures = _run_concurrently(batcher, model, requests)
    assert failures == [None] * 6
    assert sorted(set(seen)) == [1, 2]  # never padded
    assert len(seen) <= 3  # the first call, then one batch per width


def test_a_full_queue_is_refused_with_unavailable():
    batcher = Batcher(BatchingOptions(max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1,
                                      max_enqueued_batches=1))
    started, release = threading.Event(), threading.Event()

    def slow(inputs):
        started.set()
        release.wait(10)
        return {"first": inputs["items"][:, 0].copy()}

    first = threading.Thread(target=batcher.run, args=("key", slow, {"items": _strings([["a"]])}))
    first.start()
    assert started.wait(10)  # the first call runs and holds the only batch thread
    second = threading.Thread(target=batcher.run, args=("key", slow, {"items": _strings([["b"]])}))
    second.start()
    _eventually(lambda: batcher.queued_rows("key") == 1)  # the second waits in the queue, now full
    with pytest.raises(errors.ServingError) as raised:
        batcher.run("key", slow, {"items": _strings([["c"]])})
    assert raised.value.code == errors.UNAVAILABLE
    release.set()
    first.join(10)
    second.join(10)


def test_pad_to_allowed_size_repeats_the_first_row_up_to_the_next_allowed_size():
    inputs = {"items": _strings([["a", "b"], ["c"], ["d"]]), "n": np.array([1, 2, 3])}
    padded = pad_to_allowed_size(inputs, (2, 4, 8))
    assert padded["items"].tolist() == [[b"a", b"b"], [b"c", b""], [b"d", b""], [b"a", b"b"]]
    assert padded["n"].tolist() == [1, 2, 3, 1]
    assert pad_to_allowed_size(inputs, ()) is inputs
    assert pad_to_allowed_size(inputs, (1, 2)) is inputs  # larger than every allowed size: as it is


def test_allowed_batch_sizes_pad_model_calls_and_callers_get_only_their_rows():
    batcher = Batcher(BatchingOptions(max_batch_size=8, batch_timeout_micros=0, num_batch_threads=1,
                                      allowed_batch_sizes=(2, 4, 8)))
    model = _Model()
    for rows in ([["a"]], [["b"], ["c", "d"], ["e"]], [[f"x{n}"] for n in range(9)]):
        request = {"items": _strings(rows)}
        result = batcher.run("key", model, request)
        _check_own_rows([request], [result])
    assert model.batch_rows == [2, 4, 9]  # a request above max_batch_size runs as it is
    failing = _Model(fail_on=b"poison")
    with pytest.raises(errors.ServingError, match="poison"):
        batcher.run("other", failing, {"items": _strings([["poison"]])})


def test_allowed_batch_sizes_must_increase_and_end_with_max_batch_size():
    from peterrec.serving import model_config

    for sizes in ((4, 2, 8), (2, 4), (0, 8)):
        with pytest.raises(ValueError, match="allowed_batch_sizes"):
            BatchingOptions(max_batch_size=8, allowed_batch_sizes=sizes)
    parameters = model_config.BatchingParameters(max_batch_size=8, allowed_batch_sizes=(2, 8))
    assert BatchingOptions.from_parameters(parameters).allowed_batch_sizes == (2, 8)
