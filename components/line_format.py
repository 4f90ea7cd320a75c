"""``LineFormat``, the base of every reader format, and the field parsers formats share.

A format knows which files to read under a source path, their encoding, whether they
start with a header, and how to parse one line. A line that cannot be parsed raises
``BadLine`` and becomes a ``Reject`` naming the reason, the file, the line number and the
line itself, so nothing is lost silently.
"""

import csv
import math
from typing import List, Optional, Sequence, Tuple, Union

from peterrec.components.records import (
    BLANK_LINE, EMPTY_ID, MALFORMED_LINE, NON_NUMERIC_ID, NON_NUMERIC_RATING, NON_NUMERIC_TIMESTAMP,
    UNDECODABLE_LINE, UNPARSEABLE_LINE, BadLine, IngestError, Interaction, ItemRecord, LabelRecord, Reject)
from peterrec.components.source_chunks import COMPRESSED_SUFFIXES, SourceFile, read_first_line, resolve_files

_INT64_MAX = (1 << 63) - 1

Record = Union[Interaction, LabelRecord, ItemRecord]

USER_COLUMNS = ("user", "user_id", "userid", "uid")
ITEM_COLUMNS = ("item", "item_id", "itemid", "iid")
TIME_COLUMNS = ("timestamp", "time", "ts")
DOMAIN_COLUMNS = ("domain",)
LABEL_COLUMNS = ("label",)

# ----------------------------------------------------------------------------- fields


def parse_numeric_id(text: str, what: str = "id") -> str:
    """Returns a canonical non-negative integer id ("007" -> "7") or raises BadLine."""
    text = text.strip()
    if not text:
        raise BadLine(EMPTY_ID, f"empty {what}")
    if not (text.isascii() and text.isdigit()):
        raise BadLine(NON_NUMERIC_ID, f"{what} {text!r} is not a non-negative integer")
    return text if text[0] != "0" or len(text) == 1 else str(int(text))


def parse_token_id(text: str, what: str = "id") -> str:
    """Returns a free-form id (generic CSV) stripped of blanks, or raises BadLine if empty."""
    text = text.strip()
    if not text:
        raise BadLine(EMPTY_ID, f"empty {what}")
    return text


def parse_timestamp(text: str) -> int:
    """Returns an integer timestamp (integral floats accepted, truncated) or raises BadLine."""
    text = text.strip()
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise BadLine(NON_NUMERIC_TIMESTAMP, f"timestamp {text!r} is not a number") from None
        if not math.isfinite(number):
            raise BadLine(NON_NUMERIC_TIMESTAMP, f"timestamp {text!r} is not finite")
        value = int(number)
    if abs(value) > _INT64_MAX:
        raise BadLine(NON_NUMERIC_TIMESTAMP, f"timestamp {text!r} is outside int64")
    return value


def check_rating(text: str) -> None:
    """Raises BadLine unless the rating field is a finite number (its value is not used)."""
    try:
        value = float(text)
    except ValueError:
        raise BadLine(NON_NUMERIC_RATING, f"rating {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise BadLine(NON_NUMERIC_RATING, f"rating {text.strip()!r} is not finite")


def split_fields(text: str, delimiter: str, expected: int, exact: bool = True) -> List[str]:
    """Splits a line and checks the field count (``exact`` or at least ``expected``)."""
    fields = text.split(delimiter)
    if (len(fields) != expected) if exact else (len(fields) < expected):
        shown = "\\t" if delimiter == "\t" else delimiter
        need = f"{expected}" if exact else f"at least {expected}"
        raise BadLine(MALFORMED_LINE, f"expected {need} fields separated by {shown!r}, found {len(fields)}")
    return fields


# ----------------------------------------------------------------------------- delimited text with a header


def sniff_delimiter(header: str) -> str:
    """Guesses a header's delimiter: the most frequent of , tab ; and |, else a comma."""
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def split_delimited(text: str, delimiter: str) -> List[str]:
    """Splits a delimited line, honouring CSV quoting when the line has quotes."""
    if '"' not in text:
        return text.split(delimiter)
    try:
        return next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise BadLine(MALFORMED_LINE, f"bad quoting: {error}") from None


def header_columns(header: str, delimiter: str) -> Tuple[str, ...]:
    """The lower-cased, stripped column names of a header line."""
    return tuple(c.strip().lower() for c in split_delimited(header, delimiter))


def find_column(columns: Sequence[str], names: Sequence[str], path: str,
                required: bool = True) -> Optional[int]:
    """The index of the first of ``names`` among the columns; raises IngestError if required and absent."""
    for name in names:
        if name in columns:
            return columns.index(name)
    if required:
        raise IngestError(f"{path}: the header {list(columns)} has no {names[0]!r} column "
                          f"(accepted names: {', '.join(names)})")
    return None



# ----------------------------------------------------------------------------- the base format


class LineFormat:
    """A text format read line by line: which files, which encoding, how to parse a line.

    Subclasses set ``name``, ``default_file`` (the file inside a MovieLens folder, or None
    for "every file"), ``encoding``, ``has_header`` and implement ``parse``.
    """

    name = "abstract"
    default_file: Optional[str] = None
    encoding = "utf-8"
    has_header = False

    def files(self, source_path: str, what: str = "source") -> List[SourceFile]:
        """Lists the files to read under ``source_path`` and reads their headers."""
        found = resolve_files(source_path, self.default_file, what)
        files = []
        for index, (path, size) in enumerate(found):
            compressed = path.lower().endswith(COMPRESSED_SUFFIXES)
            source = SourceFile(index, path, size, compressed)
            if self.has_header:
                header = read_first_line(path, compressed).decode(self.encoding, errors="replace")
                source = self.with_header(source, header.lstrip("\ufeff"))
            files.append(source)
        return files

    def with_header(self, source: SourceFile, header: str) -> SourceFile:
        """Returns the file description completed from its header line."""
        return source

    def decode(self, raw: bytes) -> str:
        """Decodes a raw line, raising BadLine for bytes that are not in the encoding."""
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as error:
            raise BadLine(UNDECODABLE_LINE, f"not {self.encoding}: {error.reason} at byte {error.start}") from None

    def parse(self, text: str, source: SourceFile, line_number: int) -> List[Record]:
        """Parses one non-blank line into records, or raises BadLine."""
        raise NotImplementedError

    def parse_raw(self, raw: bytes, source: SourceFile, line_number: int) -> Tuple[List[Record], Optional[Reject]]:
        """Parses a raw line: (records, None) or ([], the Reject)."""
        if self.has_header and line_number == 1:
            return [], None
        try:
            text = self.decode(raw)
        except BadLine as bad:
            return [], Reject(bad.reason, source.path, line_number,
                              raw.decode(self.encoding, errors="replace"), bad.detail)
        if not text.strip():
            return [], Reject(BLANK_LINE, source.path, line_number, text, "blank line")
        try:
            return self.parse(text, source, line_number), None
        except BadLine as bad:
            return [], Reject(bad.reason, source.path, line_number, text, bad.detail)
        except Exception as error:  # noqa: BLE001 - one odd line must not stop a run; it is counted
            return [], Reject(UNPARSEABLE_LINE, source.path, line_number, text, f"{type(error).__name__}: {error}")

