"""One user's events stored column by column: the compact accumulator of the per-user combine.

An event inside the pipeline is ``(timestamp, file index, line number, position, item,
domain)`` (``beam_steps.Event``). As Python tuples a user's history costs about 250 bytes
an event (the tuple, its integers and its own copy of the item string); ``EventColumns``
keeps the four numbers in typed arrays and each distinct item and domain string once, so
an event costs 32 bytes (8 + 4 + 8 + 4 + 4 + 4) plus each distinct item of the user once.
With a cap (``max_len``) only the latest ``limit`` events are kept (``keep_latest``), so a
user's accumulator is bounded by the cap whatever the length of their raw history.

The order of events is the stable order of ``beam_steps``: by timestamp, then file index,
line number and position (unique per event), so the kept events never depend on the order
in which a runner feeds or merges them.
"""

from array import array
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

Event = Tuple[int, int, int, int, str, Optional[str]]


class EventColumns:
    """Events as columns: typed arrays of the numbers, and each item and domain string once."""

    __slots__ = ("timestamps", "files", "lines", "positions", "item_index", "domain_index",
                 "items", "domains", "_item_ids", "_domain_ids")

    def __init__(self):
        self.timestamps = array("q")
        self.files = array("i")
        self.lines = array("q")
        self.positions = array("i")
        self.item_index = array("i")
        self.domain_index = array("i")
        self.items: List[str] = []
        self.domains: List[Optional[str]] = []
        self._item_ids: Dict[str, int] = {}
        self._domain_ids: Dict[Optional[str], int] = {}

    def __len__(self) -> int:
        return len(self.timestamps)

    def __getstate__(self):
        return (self.timestamps, self.files, self.lines, self.positions, self.item_index, self.domain_index,
                self.items, self.domains)

    def __setstate__(self, state):
        (self.timestamps, self.files, self.lines, self.positions, self.item_index, self.domain_index,
         self.items, self.domains) = state
        self._item_ids = {item: index for index, item in enumerate(self.items)}
        self._domain_ids = {domain: index for index, domain in enumerate(self.domains)}

    @classmethod
    def of(cls, events: Iterable[Event]) -> "EventColumns":
        """Columns holding these events (tests, small inputs)."""
        columns = cls()
        for event in events:
            columns.append(event)
        return columns

    @staticmethod
    def _intern(value, table: Dict, values: List) -> int:
        index = table.get(value)
        if index is None:
            index = table[value] = len(values)
            values.append(value)
        return index

    def append(self, event: Event) -> None:
        """Adds one event."""
        timestamp, file_index, line_number, position, item, domain = event
        self.timestamps.append(timestamp)
        self.files.append(file_index)
        self.lines.append(line_number)
        self.positions.append(position)
        self.item_index.append(self._intern(item, self._item_ids, self.items))
        self.domain_index.append(self._intern(domain, self._domain_ids, self.domains))

    def extend(self, other: "EventColumns") -> None:
        """Adds every event of ``other`` (its strings are re-indexed into this one's tables)."""
        item_map = np.array([self._intern(item, self._item_ids, self.items) for item in other.items] or [0],
                            dtype=np.int32)
        domain_map = np.array([self._intern(d, self._domain_ids, self.domains) for d in other.domains] or [0],
                              dtype=np.int32)
        self.timestamps.extend(other.timestamps)
        self.files.extend(other.files)
        self.lines.extend(other.lines)
        self.positions.extend(other.positions)
        if len(other):
            self.item_index.frombytes(item_map[np.frombuffer(other.item_index, dtype=np.int32)].tobytes())
            self.domain_index.frombytes(domain_map[np.frombuffer(other.domain_index, dtype=np.int32)].tobytes())

    def _order(self) -> np.ndarray:
        """Indices of the events in the stable order (oldest first)."""
        return np.lexsort((np.frombuffer(self.positions, dtype=np.int32), np.frombuffer(self.lines, dtype=np.int64),
                           np.frombuffer(self.files, dtype=np.int32), np.frombuffer(self.timestamps, dtype=np.int64)))

    def _take(self, indices: np.ndarray) -> "EventColumns":
        """New columns holding the events at ``indices``, in that order, with only the strings they use."""
        taken = EventColumns()
        for name, dtype in (("timestamps", np.int64), ("files", np.int32), ("lines", np.int64),
                            ("positions", np.int32)):
            getattr(taken, name).frombytes(np.frombuffer(getattr(self, name), dtype=dtype)[indices].tobytes())
        for codes, strings, table, kept in (("item_index", self.items, "_item_ids", "items"),
                                            ("domain_index", self.domains, "_domain_ids", "domains")):
            old = np.frombuffer(getattr(self, codes), dtype=np.int32)[indices]
            used, new = np.unique(old, return_inverse=True)
            getattr(taken, codes).frombytes(new.astype(np.int32).tobytes())
            setattr(taken, kept, [strings[i] for i in used])
            setattr(taken, table, {s: i for i, s in enumerate(getattr(taken, kept))})
        return taken

    def keep_latest(self, limit: Optional[int]) -> "EventColumns":
        """The latest ``limit`` events (all with ``None``), oldest first."""
        order = self._order()
        if limit is not None and len(order) > limit:
            order = order[len(order) - limit:]
        return self._take(order)

    def sorted(self) -> "EventColumns":
        """All events, oldest first."""
        return self.keep_latest(None)

    def item_tokens(self) -> Tuple[str, ...]:
        """The items of the events, in stored order."""
        items = self.items
        return tuple(items[i] for i in self.item_index)

    def timestamp_values(self) -> Tuple[int, ...]:
        """The timestamps of the events, in stored order."""
        return tuple(self.timestamps)

    def events(self) -> List[Event]:
        """The events as tuples, in stored order (small buckets such as targets, and tests)."""
        items, domains = self.items, self.domains
        return [(t, f, n, p, items[i], domains[d]) for t, f, n, p, i, d in
                zip(self.timestamps, self.files, self.lines, self.positions, self.item_index, self.domain_index)]


def merge(parts: Sequence[EventColumns]) -> EventColumns:
    """One set of columns holding the events of every part (a single part is returned as is, not copied)."""
    if len(parts) == 1:
        return parts[0]
    merged = EventColumns()
    for part in parts:
        merged.extend(part)
    return merged
