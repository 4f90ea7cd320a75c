"""The small value types that flow through ingestion: parsed records and rejects.

Readers turn raw lines into ``Interaction``, ``LabelRecord`` or ``ItemRecord`` values, or
into a ``Reject`` that names the reason, the source file, the line number and the
offending line, so bad input is never dropped silently. Rejects are written one JSON
object per line (``Reject.to_json_line``) and read back with ``Reject.from_json_line``.

Every interaction carries its file index, line number and position in the line: together
with the timestamp they form a total order (``Interaction.order_key``) that breaks
timestamp ties by source position, whatever order a distributed runner delivers them in.
"""

import json
from typing import NamedTuple, Optional, Tuple

# Reasons a line (or a user) is rejected. The strings appear in the rejects files and the
# summary, so they are part of the output format: add new ones, never rename.
BLANK_LINE = "blank_line"
MALFORMED_LINE = "malformed_line"
UNDECODABLE_LINE = "undecodable_line"
EMPTY_ID = "empty_id"
NON_NUMERIC_ID = "non_numeric_id"
NON_NUMERIC_TIMESTAMP = "non_numeric_timestamp"
NON_NUMERIC_RATING = "non_numeric_rating"
MISSING_DOMAIN = "missing_domain"
UNKNOWN_ITEM = "unknown_item"            # the item is not in the item table a domain rule needs
EMPTY_SEQUENCE = "empty_sequence"        # a user with no items left in the sequence
NO_ITEMS = "no_items"                    # a PeterRec CSV line without any item (only padding)
EMPTY_LABEL = "empty_label"
UNKNOWN_USER = "unknown_user"            # a label for a user who has no sequence
MISSING_LABEL = "missing_label"          # a user with a sequence but no label
DUPLICATE_USER = "duplicate_user"        # a second label line for the same user
UNKNOWN_LABEL = "unknown_label"          # a label outside a given label vocabulary
NO_TARGET_ITEMS = "no_target_items"      # a cold-start user without target-domain items
MALFORMED_ITEM_LINE = "malformed_item_line"  # a bad line in an item table (movies.dat, u.item)
UNPARSEABLE_LINE = "unparseable_line"    # a parser failed in an unforeseen way (the detail names the error)

# Reasons that reject whole users rather than input lines: they do not count as rejected
# interactions in the accounting identity (their interactions are counted where they went).
USER_LEVEL_REASONS = frozenset({EMPTY_SEQUENCE, MISSING_LABEL, NO_TARGET_ITEMS})


class Interaction(NamedTuple):
    """One user-item event read from a source line."""

    user: str
    item: str
    timestamp: int
    file_index: int
    line_number: int     # 1-based line number in its file
    position: int = 0    # position within the line (PeterRec CSV lines hold many items)
    domain: Optional[str] = None

    def order_key(self) -> Tuple[int, int, int, int]:
        """The total order of a user's events: time, then source position (stable ties)."""
        return (self.timestamp, self.file_index, self.line_number, self.position)


class LabelRecord(NamedTuple):
    """One user's class label read from an attribute table."""

    user: str
    label: str
    file_index: int
    line_number: int
    source: str = ""
    line: str = ""


class ItemRecord(NamedTuple):
    """One item of an item table (e.g. MovieLens movies): its domain and its title.

    ``domain`` comes from a domain rule on the item's genres (``None`` when the table is
    read without a rule, for its titles only); ``title`` is ``None`` when the line has none.
    """

    item: str
    domain: Optional[str]
    title: Optional[str] = None


class Reject(NamedTuple):
    """A line (or a user) that could not be used, with the reason and where it came from.

    ``line_number`` is ``None`` for user-level rejects (``USER_LEVEL_REASONS``), whose
    ``line`` holds the user id.
    """

    reason: str
    source: str
    line_number: Optional[int]
    line: str
    detail: str = ""

    def to_json_line(self) -> str:
        """Returns the reject as one line of JSON (the rejects file format)."""
        return json.dumps({"reason": self.reason, "source": self.source,
                           "line_number": self.line_number, "line": self.line,
                           "detail": self.detail}, ensure_ascii=False)

    @classmethod
    def from_json_line(cls, text: str) -> "Reject":
        """Parses a line written by ``to_json_line``."""
        data = json.loads(text)
        return cls(data["reason"], data["source"], data["line_number"], data["line"],
                   data.get("detail", ""))


class BadLine(ValueError):
    """Raised by a line parser: the line is rejected for ``reason`` (``detail`` says why)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class IngestError(ValueError):
    """An ingestion run cannot go on or failed its checks (missing source, too many rejects...).

    The message says what went wrong and what to do; ``peterrec.components.ingest``
    re-exports it.
    """
