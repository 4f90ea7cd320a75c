"""Batches concurrent Predict calls on one model/version/signature into one model call.

Every caller thread hands its inputs (a dict of arrays whose first dimension is its
rows) to ``Batcher.run(key, function, inputs)`` and blocks until its own rows come
back. Requests for the same key queue up; the request at the head of the queue leads:
it waits until a batch thread is free, then until the batch is full or it has waited
``batch_timeout_micros``, takes every queued request that fits into
``max_batch_size`` rows, merges their inputs (right-padding variable-length inputs,
``""`` for strings and 0 for numbers), makes one model call and splits the outputs back
by rows. So batching needs no threads of its own, adds no wait when the timeout is 0,
and still merges requests that queue up while the model is busy. With
``allowed_batch_sizes``, as in TF Serving, each model call is padded up to the smallest
allowed size that holds its rows (with copies of its first row, whose outputs are dropped),
so the model only ever sees those few batch sizes.

If a merged batch fails, its requests are retried one by one, so one bad request
cannot fail its neighbours.
"""

import collections
import dataclasses
import threading
import time
from typing import Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from peterrec.serving import errors

Arrays = Dict[str, np.ndarray]


@dataclasses.dataclass
class BatchingOptions:
    """How requests are merged (TF Serving's batching parameters, see model_config)."""

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 100
    pad_variable_length_inputs: bool = True
    allowed_batch_sizes: Tuple[int, ...] = ()  # () = any size; else increasing, ending with max_batch_size

    def __post_init__(self):
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ValueError(f"batching sizes must be >= 1: {self}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        self.allowed_batch_sizes = tuple(int(size) for size in self.allowed_batch_sizes)
        sizes = list(self.allowed_batch_sizes)
        if sizes and (sizes != sorted(set(sizes)) or sizes[0] < 1 or sizes[-1] != self.max_batch_size):
            raise ValueError(f"allowed_batch_sizes {sizes} must increase and end with max_batch_size "
                             f"{self.max_batch_size}")

    @classmethod
    def from_parameters(cls, parameters) -> "BatchingOptions":
        """From a ``model_config.BatchingParameters``."""
        return cls(
            max_batch_size=parameters.max_batch_size,
            batch_timeout_micros=parameters.batch_timeout_micros,
            num_batch_threads=parameters.num_batch_threads,
            max_enqueued_batches=parameters.max_enqueued_batches,
            pad_variable_length_inputs=parameters.pad_variable_length_inputs,
            allowed_batch_sizes=parameters.allowed_batch_sizes,
        )


def rows_of(inputs: Mapping[str, np.ndarray]) -> int:
    """The common first dimension of a request's inputs (ValueError if they disagree)."""
    counts = {int(np.shape(array)[0]) if np.ndim(array) else -1 for array in inputs.values()}
    if len(counts) != 1 or -1 in counts:
        raise ValueError(f"inputs must share their first (batch) dimension, got {sorted(counts)}")
    return counts.pop()


def _pad_value(array: np.ndarray):
    return b"" if array.dtype == object else array.dtype.type(0)


def merge_inputs(requests: Sequence[Arrays]) -> Arrays:
    """Concatenates requests' inputs along rows, right-padding other dimensions to the largest."""
    if len(requests) == 1:
        return dict(requests[0])
    merged = {}
    for name in requests[0]:
        arrays = [request[name] for request in requests]
        trailing = [array.shape[1:] for array in arrays]
        if len(set(trailing)) == 1:
            merged[name] = np.concatenate(arrays, axis=0)
            continue
        ranks = {len(shape) for shape in trailing}
        if len(ranks) != 1:
            raise ValueError(f"input {name!r} has different ranks across requests")
        target = tuple(max(sizes) for sizes in zip(*trailing))
        total = sum(array.shape[0] for array in arrays)
        out = np.full((total,) + target, _pad_value(arrays[0]), dtype=arrays[0].dtype)
        row = 0
        for array in arrays:
            index = (slice(row, row + array.shape[0]),) + tuple(slice(0, size) for size in array.shape[1:])
            out[index] = array
            row += array.shape[0]
        merged[name] = out
    return merged


def pad_to_allowed_size(inputs: Arrays, allowed_batch_sizes: Sequence[int]) -> Arrays:
    """The inputs grown to the smallest allowed batch size that holds their rows, with copies of
    their first row (as TF Serving pads); unchanged when no size is given or none is large enough."""
    rows = rows_of(inputs)
    target = next((size for size in allowed_batch_sizes if size >= rows), rows)
    if target == rows:
        return inputs
    return {name: np.concatenate([array, np.repeat(array[:1], target - rows, axis=0)])
            for name, array in inputs.items()}


def split_outputs(outputs: Arrays, row_counts: Sequence[int]) -> List[Arrays]:
    """Splits a batched call's outputs back into one dict per request, by rows."""
    if len(row_counts) == 1:
        return [outputs]
    total = sum(row_counts)
    for name, array in outputs.items():
        if np.ndim(array) == 0 or array.shape[0] != total:
            raise errors.ServingError(
                errors.INTERNAL,
                f"output {name!r} has shape {list(np.shape(array))}, not {total} rows first: "
                "this signature cannot be batched (serve it without batching)",
            )
    parts = []
    row = 0
    for count in row_counts:
        parts.append({name: array[row : row + count] for name, array in outputs.items()})
        row += count
    return parts


class _Task:
    __slots__ = ("inputs", "rows", "shape_key", "enqueued", "event", "outputs", "error", "done")

    def __init__(self, inputs: Arrays, rows: int):
        self.inputs = inputs
        self.rows = rows
        self.shape_key = tuple((name, array.shape[1:]) for name, array in sorted(inputs.items()))
        self.enqueued = time.monotonic()
        self.event = threading.Event()  # set when done or promoted to the head of the queue
        self.outputs: Optional[Arrays] = None
        self.error: Optional[BaseException] = None
        self.done = False

    def result(self) -> Arrays:
        """This request's outputs, or raises its error."""
        if self.error is not None:
            raise self.error
        return self.outputs


class _Queue:
    """The requests waiting for one key, and the batches of that key running now."""

    def __init__(self, options: BatchingOptions, stats: "BatchStats"):
        self.options = options
        self.stats = stats
        self.lock = threading.Lock()
        self.leader_wakeup = threading.Condition(self.lock)
        self.pending: "collections.deque[_Task]" = collections.deque()
        self.pending_rows = 0
        self.running = 0

    def run(self, function: Callable[[Arrays], Arrays], inputs: Arrays, rows: int) -> Arrays:
        """Queues one request; it leads a batch when it reaches the head, else waits for its rows."""
        options = self.options
        task = _Task(inputs, rows)
        with self.lock:
            if self.pending_rows + rows > options.max_batch_size * options.max_enqueued_batches:
                raise errors.ServingError(
                    errors.UNAVAILABLE,
                    f"the batch queue is full ({self.pending_rows} rows waiting); retry later",
                )
            self.pending.append(task)
            self.pending_rows += rows
            is_head = self.pending[0] is task
            if not is_head and self.pending_rows >= options.max_batch_size:
                self.leader_wakeup.notify_all()  # the head may now close a full batch
        if not is_head:
            task.event.wait()
            if task.done:
                return task.result()
        batch = self._lead(task)
        self._execute(function, batch)
        return task.result()

    def _lead(self, task: _Task) -> List[_Task]:
        """Called by the head of the queue: waits for a free thread and a full batch or the timeout."""
        options = self.options
        timeout = options.batch_timeout_micros / 1e6
        with self.lock:
            while self.running >= options.num_batch_threads:
                self.leader_wakeup.wait()
            deadline = task.enqueued + timeout
            while self.pending_rows < options.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.leader_wakeup.wait(remaining)
            batch = self._take_batch()
            self.running += 1
            if self.pending:
                self.pending[0].event.set()  # the next request leads the next batch
        return batch

    def _take_batch(self) -> List[_Task]:
        head = self.pending.popleft()
        batch = [head]
        rows = head.rows
        kept = collections.deque()
        while self.pending and rows < self.options.max_batch_size:
            task = self.pending.popleft()
            fits = rows + task.rows <= self.options.max_batch_size
            same_shape = self.options.pad_variable_length_inputs or task.shape_key == head.shape_key
            if fits and same_shape:
                batch.append(task)
                rows += task.rows
            else:
                kept.append(task)
        kept.extend(self.pending)
        self.pending = kept
        self.pending_rows -= rows
        return batch

    def _execute(self, function, batch: List[_Task]) -> None:
        try:
            try:
                parts = self._call(function, batch)
                self.stats.record(len(batch), sum(task.rows for task in batch))
                for task, part in zip(batch, parts):
                    task.outputs = part
            except Exception as error:  # noqa: BLE001 - reported to each caller
                if len(batch) == 1:
                    batch[0].error = error
                    self.stats.record(1, batch[0].rows)
                else:
                    self._run_one_by_one(function, batch)
        finally:
            with self.lock:
                self.running -= 1
                self.leader_wakeup.notify_all()
            for task in batch:
                task.done = True
                task.event.set()

    def _call(self, function, batch: List[_Task]) -> List[Arrays]:
        """One model call on the batch's merged (and padded) inputs; each request's outputs."""
        rows = [task.rows for task in batch]
        merged = pad_to_allowed_size(merge_inputs([task.inputs for task in batch]), self.options.allowed_batch_sizes)
        padding = rows_of(merged) - sum(rows)
        return split_outputs(function(merged), rows + [padding] if padding else rows)[: len(batch)]

    def _run_one_by_one(self, function, batch: List[_Task]) -> None:
        for task in batch:
            try:
                task.outputs = self._call(function, [task])[0]
            except Exception as error:  # noqa: BLE001 - reported to its caller
                task.error = error
            self.stats.record(1, task.rows)


class BatchStats:
    """Counts of model calls and rows the batcher made (for tests and metrics)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.calls = 0
        self.requests = 0
        self.rows = 0

    def record(self, requests: int, rows: int) -> None:
        """Counts one model call that served ``requests`` requests and ``rows`` rows."""
        with self._lock:
            self.calls += 1
            self.requests += requests
            self.rows += rows

    def snapshot(self) -> Dict[str, int]:
        """``{"calls", "requests", "rows"}`` so far."""
        with self._lock:
            return {"calls": self.calls, "requests": self.requests, "rows": self.rows}


class Batcher:
    """Merges concurrent calls that share a key (model, version, signature) into batches."""

    def __init__(self, options: Optional[BatchingOptions] = None):
        self.options = options or BatchingOptions()
        self.stats = BatchStats()
        self._queues: Dict[Hashable, _Queue] = {}
        self._lock = threading.Lock()

    def run(self, key: Hashable, function: Callable[[Arrays], Arrays], inputs: Arrays) -> Arrays:
        """Runs ``function`` on ``inputs``, possibly merged with other callers' inputs.

        Blocks until this caller's rows are back; raises what the model call raised.
        """
        rows = rows_of(inputs)
        queue = self._queues.get(key)
        if queue is None:
            with self._lock:
                queue = self._queues.setdefault(key, _Queue(self.options, self.stats))
        return queue.run(function, inputs, rows)

    def queued_rows(self, key: Hashable) -> int:
        """Rows of the requests of ``key`` waiting for a batch now (not those running)."""
        queue = self._queues.get(key)
        if queue is None:
            return 0
        with queue.lock:
            return queue.pending_rows

    def forget(self, predicate: Callable[[Hashable], bool]) -> None:
        """Drops the queues whose key matches (e.g. of an unloaded version); waiting calls still finish."""
        with self._lock:
            for key in [key for key in self._queues if predicate(key)]:
                del self._queues[key]
