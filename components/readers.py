"""Readers: raw files -> ``Interaction`` / ``LabelRecord`` / ``ItemRecord`` values or ``Reject``s.

Each input format is a ``LineFormat``: it knows which files to read under a source path,
their encoding, whether they start with a header, and how to parse one line. A line that
cannot be parsed raises ``BadLine`` and becomes a ``Reject`` naming the reason, the file,
the line number and the line itself, so nothing is lost silently.

Files are read in byte-range ``Chunk``s so a runner can parse one big file on many
workers. A chunk owns the lines that *start* inside its range; its first line number is
the number of newlines before the range (``count_newlines`` of the earlier chunks), so
every record keeps its exact file line number whichever worker reads it. The Beam code
in ``ingest.py`` does that in parallel; ``read_records`` does it sequentially for small
tables and tests.

Formats (``INTERACTION_FORMATS``):

- ``movielens-1m``: ``ratings.dat`` lines ``user::item::rating::timestamp`` (latin-1);
- ``movielens-100k``: ``u.data`` lines ``user<TAB>item<TAB>rating<TAB>timestamp``;
- ``csv``: delimited text with a header naming ``user``, ``item``, ``timestamp`` and
  optionally ``domain`` columns (comma, tab, semicolon or pipe, found from the header);
- ``peterrec-csv``: the original authors' files (github fajieyuan/sigir2020_peterrec,
  ``Data/Session``): one user per line, comma-separated item ids oldest first, left-padded
  with ``0``; fine-tuning files add an empty field (``,,``) and then the target items.
  Users are numbered by line; an item's position in the line is its timestamp; source
  items get domain ``source`` and target items domain ``target``.

Attribute tables (``LABEL_FORMATS``): MovieLens ``users.dat`` (``user::gender::age::
occupation::zip``), MovieLens-100K ``u.user`` (``user|age|gender|occupation|zip``; ages are
bucketed like ML-1M's), a generic ``user,label`` CSV with a header, and the target field
of a PeterRec CSV. Item tables (``ITEM_FORMATS``) give each MovieLens movie a domain by a
``DOMAIN_RULES`` rule on its genres.
"""

import csv
import dataclasses
import math
import os
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from peterrec.components.records import (
    BLANK_LINE, EMPTY_ID, EMPTY_LABEL, MALFORMED_ITEM_LINE, MALFORMED_LINE, NO_ITEMS, NON_NUMERIC_ID,
    NON_NUMERIC_RATING, NON_NUMERIC_TIMESTAMP, UNDECODABLE_LINE, UNPARSEABLE_LINE, BadLine, IngestError,
    Interaction, ItemRecord, LabelRecord, Reject)

DEFAULT_CHUNK_BYTES = 8 << 20
_INT64_MAX = (1 << 63) - 1
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".zstd", ".lzma", ".xz")

Record = Union[Interaction, LabelRecord, ItemRecord]

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


# ----------------------------------------------------------------------------- files


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One input file: its index in the run (the tie-breaker), path, size and header."""

    index: int
    path: str
    size: int
    compressed: bool = False
    columns: Optional[Tuple[str, ...]] = None   # header column names, lower-cased
    delimiter: Optional[str] = None
    positions: Tuple[Optional[int], ...] = ()   # where a format's fields are among the columns


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A byte range of a file: the lines that start in [start, end) belong to it."""

    file: SourceFile
    index: int       # position of the chunk within its file
    start: int
    end: int

    @property
    def key(self) -> str:
        """A unique name of the chunk (file index and chunk index)."""
        return f"{self.file.index}:{self.index}"


def _filesystems():
    from apache_beam.io.filesystems import FileSystems  # lazy: Beam is slow to import

    return FileSystems


def _open(path: str, compressed: bool):
    from apache_beam.io.filesystem import CompressionTypes

    return _filesystems().open(path, compression_type=CompressionTypes.AUTO if compressed
                               else CompressionTypes.UNCOMPRESSED)


def _match(pattern: str) -> List[Tuple[str, int]]:
    try:
        results = _filesystems().match([pattern])
    except Exception:  # Beam raises BeamIOError for no match on some file systems
        return []
    return sorted((m.path, m.size_in_bytes) for result in results for m in result.metadata_list)


def _is_dir(path: str) -> bool:
    if "://" not in path:
        return os.path.isdir(path)
    return bool(_match(path.rstrip("/") + "/*"))


def resolve_files(source_path: str, default_name: Optional[str] = None,
                  what: str = "source") -> List[Tuple[str, int]]:
    """Lists the (path, size) pairs to read for a source path.

    ``source_path`` is a file, a glob, or a folder: with ``default_name`` the folder must
    hold that file (MovieLens), otherwise every visible file in it is read, sorted by name.
    Raises IngestError when nothing is found.
    """
    if not source_path:
        raise IngestError(f"no {what} path given")
    if _is_dir(source_path):
        if default_name is not None:
            found = _match(os.path.join(source_path, default_name))
            if not found:
                raise IngestError(f"{what} folder {source_path} has no {default_name}")
            return found
        found = [(p, s) for p, s in _match(os.path.join(source_path, "*"))
                 if not os.path.basename(p).startswith((".", "_")) and not _is_dir(p)]
        if not found:
            raise IngestError(f"{what} folder {source_path} holds no files")
        return found
    found = _match(source_path)
    if not found:
        raise IngestError(f"{what} {source_path} does not exist (no file matches it)")
    return found


def read_first_line(path: str, compressed: bool = False, max_bytes: int = 1 << 20) -> bytes:
    """Returns the first line of a file without its line break (headers)."""
    with _open(path, compressed) as handle:
        data = handle.read(max_bytes)
    line = data.split(b"\n", 1)[0]
    return line[:-1] if line.endswith(b"\r") else line


def plan_chunks(files: Sequence[SourceFile], chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> List[Chunk]:
    """Cuts files into byte-range chunks (compressed files are read whole)."""
    chunks = []
    for source in files:
        if source.compressed or source.size <= chunk_bytes:
            chunks.append(Chunk(source, 0, 0, source.size if not source.compressed else -1))
            continue
        count = max(1, math.ceil(source.size / chunk_bytes))
        bounds = [source.size * k // count for k in range(count + 1)]
        chunks.extend(Chunk(source, k, bounds[k], bounds[k + 1]) for k in range(count))
    return chunks


def count_newlines(chunk: Chunk, block: int = 1 << 22) -> int:
    """Counts the newline bytes inside the chunk's byte range (for line numbering)."""
    total = 0
    with _open(chunk.file.path, chunk.file.compressed) as handle:
        if chunk.end < 0:  # a whole compressed file
            while True:
                data = handle.read(block)
                if not data:
                    return total
                total += data.count(b"\n")
        handle.seek(chunk.start)
        left = chunk.end - chunk.start
        while left > 0:
            data = handle.read(min(block, left))
            if not data:
                break
            total += data.count(b"\n")
            left -= len(data)
    return total


def first_line_numbers(chunks: Sequence[Chunk], newline_counts: Dict[str, int]) -> Dict[str, int]:
    """Returns, per chunk key, the number of newlines in its file before the chunk starts."""
    before: Dict[str, int] = {}
    by_file: Dict[int, List[Chunk]] = {}
    for chunk in chunks:
        by_file.setdefault(chunk.file.index, []).append(chunk)
    for file_chunks in by_file.values():
        total = 0
        for chunk in sorted(file_chunks, key=lambda c: c.start):
            before[chunk.key] = total
            total += newline_counts[chunk.key]
    return before


def _read_all(handle, block: int = 1 << 22) -> bytes:
    parts = []
    while True:
        data = handle.read(block)  # Beam's compressed streams need a size
        if not data:
            return b"".join(parts)
        parts.append(data)


def iter_chunk_lines(chunk: Chunk, newlines_before: int) -> Iterator[Tuple[int, bytes]]:
    """Yields (1-based line number, raw line without its line break) for the chunk's lines."""
    with _open(chunk.file.path, chunk.file.compressed) as handle:
        if chunk.end < 0:  # a whole compressed file
            data, offset, line_index = _read_all(handle), 0, 0
        else:
            begin = max(chunk.start - 1, 0)
            handle.seek(begin)
            data = handle.read(chunk.end - begin)
            if chunk.end < chunk.file.size and not data.endswith(b"\n"):
                parts = [data]
                while True:  # finish the line that starts inside the chunk
                    more = handle.read(1 << 16)
                    if not more:
                        break
                    cut = more.find(b"\n")
                    if cut >= 0:
                        parts.append(more[:cut + 1])
                        break
                    parts.append(more)
                data = b"".join(parts)
            if chunk.start == 0:
                offset, line_index = 0, 0
            else:
                cut = data.find(b"\n")  # data[0] is the byte before the chunk
                if cut < 0 or begin + cut + 1 >= chunk.end:
                    return  # no line starts in this chunk
                offset = cut + 1
                line_index = newlines_before + (0 if cut == 0 else 1)
    lines = data[offset:].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the text after the final line break
    for number, raw in enumerate(lines, start=line_index + 1):
        yield number, raw[:-1] if raw.endswith(b"\r") else raw


# ----------------------------------------------------------------------------- formats


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
            compressed = path.lower().endswith(_COMPRESSED_SUFFIXES)
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


def _sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _split_delimited(text: str, delimiter: str) -> List[str]:
    if '"' not in text:
        return text.split(delimiter)
    try:
        return next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as error:
        raise BadLine(MALFORMED_LINE, f"bad quoting: {error}") from None


def _header_columns(header: str, delimiter: str) -> Tuple[str, ...]:
    return tuple(c.strip().lower() for c in _split_delimited(header, delimiter))


def _find_column(columns: Sequence[str], names: Sequence[str], path: str,
                 required: bool = True) -> Optional[int]:
    for name in names:
        if name in columns:
            return columns.index(name)
    if required:
        raise IngestError(f"{path}: the header {list(columns)} has no {names[0]!r} column "
                          f"(accepted names: {', '.join(names)})")
    return None


class MovieLens1MRatings(LineFormat):
    """MovieLens-1M ``ratings.dat``: ``user::item::rating::timestamp``, latin-1."""

    name = "movielens-1m"
    default_file = "ratings.dat"
    encoding = "latin-1"
    delimiter = "::"
    _plain_ratings = frozenset("12345")

    def parse(self, text, source, line_number):
        user, item, rating, timestamp = split_fields(text, self.delimiter, 4)
        check_rating(rating)
        return [Interaction(parse_numeric_id(user, "user id"), parse_numeric_id(item, "item id"),
                            parse_timestamp(timestamp), source.index, line_number)]

    def parse_raw(self, raw, source, line_number):
        # Fast path for the common clean line (ML-1M has a million of them); anything
        # unusual goes through the checked path, which gives the same records or a Reject.
        text = raw.decode("latin-1")
        if text.isascii():
            fields = text.split(self.delimiter)
            if len(fields) == 4:
                user, item, rating, timestamp = fields
                if (user.isdigit() and item.isdigit() and timestamp.isdigit() and user[0] != "0"
                        and item[0] != "0" and rating in self._plain_ratings and len(timestamp) < 19):
                    return [Interaction(user, item, int(timestamp), source.index, line_number)], None
        return super().parse_raw(raw, source, line_number)


class MovieLens100KRatings(MovieLens1MRatings):
    """MovieLens-100K ``u.data``: ``user<TAB>item<TAB>rating<TAB>timestamp``."""

    name = "movielens-100k"
    default_file = "u.data"
    delimiter = "\t"


USER_COLUMNS = ("user", "user_id", "userid", "uid")
ITEM_COLUMNS = ("item", "item_id", "itemid", "iid")
TIME_COLUMNS = ("timestamp", "time", "ts")
DOMAIN_COLUMNS = ("domain",)
LABEL_COLUMNS = ("label",)


class GenericInteractions(LineFormat):
    """Delimited interactions with a header: user, item, timestamp and optional domain."""

    name = "csv"
    has_header = True

    def with_header(self, source, header):
        delimiter = _sniff_delimiter(header)
        columns = _header_columns(header, delimiter)
        positions = tuple(_find_column(columns, names, source.path)
                          for names in (USER_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS))
        positions += (_find_column(columns, DOMAIN_COLUMNS, source.path, required=False),)
        return dataclasses.replace(source, columns=columns, delimiter=delimiter, positions=positions)

    def parse(self, text, source, line_number):
        columns = source.columns
        fields = _split_delimited(text, source.delimiter)
        if len(fields) != len(columns):
            raise BadLine(MALFORMED_LINE, f"expected {len(columns)} fields {list(columns)}, found {len(fields)}")
        user_at, item_at, time_at, domain_at = source.positions
        user = parse_token_id(fields[user_at], "user id")
        item = parse_token_id(fields[item_at], "item id")
        timestamp = parse_timestamp(fields[time_at])
        domain = (fields[domain_at].strip() or None) if domain_at is not None else None
        return [Interaction(user, item, timestamp, source.index, line_number, 0, domain)]


def _peterrec_user(source: SourceFile, line_number: int) -> str:
    return str(line_number) if source.index == 0 else f"{source.index}-{line_number}"


def _peterrec_items(part: str, what: str) -> List[str]:
    items = []
    for token in part.split(","):
        token = token.strip()
        if not token:
            raise BadLine(MALFORMED_LINE, f"empty field among the {what} items")
        token = parse_numeric_id(token, f"{what} item id")
        if token != "0":  # the original files left-pad with 0
            items.append(token)
    return items


def split_peterrec_line(text: str) -> Tuple[List[str], Optional[List[str]]]:
    """Splits a PeterRec CSV line into (source items, target items or None), padding dropped."""
    text = text.strip()
    source, separator, target = text.partition(",,")
    return (_peterrec_items(source, "source") if source else [],
            _peterrec_items(target, "target") if separator else None)


class PeterRecCsv(LineFormat):
    """The original PeterRec CSV: ``s1,s2,...,,t1,t2`` (source items, empty field, targets).

    The user id is the line number (prefixed by the file index after the first file);
    the timestamp of an item is its position on the line.
    """

    name = "peterrec-csv"

    def parse(self, text, source, line_number):
        source_items, target_items = split_peterrec_line(text)
        if not source_items and not target_items:
            raise BadLine(NO_ITEMS, "the line holds no item (only padding)")
        user = _peterrec_user(source, line_number)
        records = [Interaction(user, item, position, source.index, line_number, position, "source")
                   for position, item in enumerate(source_items)]
        offset = len(source_items)
        records.extend(Interaction(user, item, offset + k, source.index, line_number, offset + k, "target")
                       for k, item in enumerate(target_items or ()))
        return records


# ----------------------------------------------------------------------------- attribute tables

ML1M_ATTRIBUTES = {"gender": 1, "age": 2, "occupation": 3}
ML100K_ATTRIBUTES = {"age": 1, "gender": 2, "occupation": 3}
# ML-1M's age buckets (README): a bucket is named by its lower bound.
ML_AGE_BUCKETS = ((56, "56"), (50, "50"), (45, "45"), (35, "35"), (25, "25"), (18, "18"), (0, "1"))


def ml_age_bucket(age: int) -> str:
    """Maps an age in years to ML-1M's age bucket (1, 18, 25, 35, 45, 50, 56)."""
    for lower, name in ML_AGE_BUCKETS:
        if age >= lower:
            return name
    return "1"


class _LabelFormat(LineFormat):
    """Base of attribute tables: ``attribute`` picks the column used as the label."""

    attributes: Dict[str, int] = {}

    def __init__(self, attribute: str = "label"):
        if self.attributes and attribute not in self.attributes:
            raise IngestError(f"{self.name} attribute tables have no {attribute!r} column; "
                              f"choose one of {sorted(self.attributes)}")
        self.attribute = attribute

    def _label(self, user: str, label: str, source: SourceFile, line_number: int, text: str) -> LabelRecord:
        label = label.strip()
        if not label:
            raise BadLine(EMPTY_LABEL, f"empty {self.attribute}")
        return LabelRecord(user, label, source.index, line_number, source.path, text)


class MovieLens1MUsers(_LabelFormat):
    """MovieLens-1M ``users.dat``: ``user::gender::age::occupation::zip``."""

    name = "movielens-1m"
    default_file = "users.dat"
    encoding = "latin-1"
    attributes = ML1M_ATTRIBUTES

    def parse(self, text, source, line_number):
        fields = split_fields(text, "::", 5)
        user = parse_numeric_id(fields[0], "user id")
        return [self._label(user, fields[self.attributes[self.attribute]], source, line_number, text)]


class MovieLens100KUsers(_LabelFormat):
    """MovieLens-100K ``u.user``: ``user|age|gender|occupation|zip`` (ages -> ML-1M buckets)."""

    name = "movielens-100k"
    default_file = "u.user"
    encoding = "latin-1"
    attributes = ML100K_ATTRIBUTES

    def parse(self, text, source, line_number):
        fields = split_fields(text, "|", 5)
        user = parse_numeric_id(fields[0], "user id")
        label = fields[self.attributes[self.attribute]]
        if self.attribute == "age":
            years = label.strip()
            if not (years.isascii() and years.isdigit()):
                raise BadLine(MALFORMED_LINE, f"age {years!r} is not a whole number")
            label = ml_age_bucket(int(years))
        return [self._label(user, label, source, line_number, text)]


class GenericLabels(_LabelFormat):
    """A delimited ``user,label`` table with a header (``user`` and ``label`` columns,
    or the attribute's name, or else the first two columns)."""

    name = "csv"
    has_header = True

    def with_header(self, source, header):
        delimiter = _sniff_delimiter(header)
        columns = _header_columns(header, delimiter)
        if len(columns) < 2:
            raise IngestError(f"{source.path}: a label table needs a header with at least two "
                              f"columns (user,label), found {list(columns)}")
        user = _find_column(columns, USER_COLUMNS, source.path, required=False)
        label = _find_column(columns, (self.attribute.lower(),) + LABEL_COLUMNS, source.path, required=False)
        positions = (0 if user is None else user, 1 if label is None else label)
        return dataclasses.replace(source, columns=columns, delimiter=delimiter, positions=positions)

    def parse(self, text, source, line_number):
        fields = _split_delimited(text, source.delimiter)
        if len(fields) != len(source.columns):
            raise BadLine(MALFORMED_LINE,
                          f"expected {len(source.columns)} fields {list(source.columns)}, found {len(fields)}")
        user_at, label_at = source.positions
        user = parse_token_id(fields[user_at], "user id")
        return [self._label(user, fields[label_at], source, line_number, text)]


class PeterRecLabels(_LabelFormat):
    """The target field of a PeterRec CSV as a class label (one token after ``,,``)."""

    name = "peterrec-csv"

    def parse(self, text, source, line_number):
        _, _, target = text.strip().partition(",,")
        tokens = [t.strip() for t in target.split(",") if t.strip()]
        if len(tokens) != 1:
            raise BadLine(MALFORMED_LINE if tokens else EMPTY_LABEL,
                          f"expected one label after ',,', found {len(tokens)}")
        return [self._label(_peterrec_user(source, line_number), tokens[0], source, line_number, text)]


# ----------------------------------------------------------------------------- item tables

ML_TARGET_GENRES = frozenset({"Action", "Horror", "Sci-Fi", "Thriller"})
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")


def movielens_genre_domain(genres: Sequence[str]) -> str:
    """The ``movielens-genre`` rule: first-listed genre in ML_TARGET_GENRES -> "target"."""
    return "target" if genres and genres[0] in ML_TARGET_GENRES else "source"


DOMAIN_RULES: Dict[str, Callable[[Sequence[str]], str]] = {"movielens-genre": movielens_genre_domain}


class _ItemFormat(LineFormat):
    """Base of item tables: ``rule`` maps an item's genres to its domain."""

    def __init__(self, rule: str):
        if rule not in DOMAIN_RULES:
            raise IngestError(f"unknown domain rule {rule!r}; known rules: {sorted(DOMAIN_RULES)}")
        self.rule = DOMAIN_RULES[rule]

    def parse_raw(self, raw, source, line_number):
        records, reject = super().parse_raw(raw, source, line_number)
        if reject is not None:  # item-table rejects are not interaction rejects
            reject = reject._replace(reason=MALFORMED_ITEM_LINE,
                                     detail=f"{reject.reason}: {reject.detail}".rstrip(": "))
        return records, reject


class MovieLens1MMovies(_ItemFormat):
    """MovieLens-1M ``movies.dat``: ``item::title::Genre1|Genre2``."""

    name = "movielens-1m"
    default_file = "movies.dat"
    encoding = "latin-1"

    def parse(self, text, source, line_number):
        fields = text.split("::")
        if len(fields) < 3:
            raise BadLine(MALFORMED_LINE, f"expected 3 fields separated by '::', found {len(fields)}")
        genres = [g.strip() for g in fields[-1].split("|") if g.strip()]
        return [ItemRecord(parse_numeric_id(fields[0], "item id"), self.rule(genres))]


class MovieLens100KItems(_ItemFormat):
    """MovieLens-100K ``u.item``: ``item|title|date|video date|url|`` then 19 genre flags."""

    name = "movielens-100k"
    default_file = "u.item"
    encoding = "latin-1"

    def parse(self, text, source, line_number):
        fields = text.split("|")
        if len(fields) < 5 + len(ML100K_GENRES):
            raise BadLine(MALFORMED_LINE,
                          f"expected {5 + len(ML100K_GENRES)} fields separated by '|', found {len(fields)}")
        flags = fields[-len(ML100K_GENRES):]
        genres = [g for g, flag in zip(ML100K_GENRES, flags) if flag.strip() == "1"]
        return [ItemRecord(parse_numeric_id(fields[0], "item id"), self.rule(genres))]


# ----------------------------------------------------------------------------- registries

INTERACTION_FORMATS: Dict[str, Callable[[], LineFormat]] = {
    "movielens-1m": MovieLens1MRatings,
    "movielens-100k": MovieLens100KRatings,
    "csv": GenericInteractions,
    "peterrec-csv": PeterRecCsv,
}
LABEL_FORMATS: Dict[str, Callable[[str], LineFormat]] = {
    "movielens-1m": MovieLens1MUsers,
    "movielens-100k": MovieLens100KUsers,
    "csv": GenericLabels,
    "peterrec-csv": PeterRecLabels,
}
ITEM_FORMATS: Dict[str, Callable[[str], LineFormat]] = {
    "movielens-1m": MovieLens1MMovies,
    "movielens-100k": MovieLens100KItems,
}


def interaction_format(name: str) -> LineFormat:
    """Returns the reader of an interaction format, or raises IngestError for an unknown name."""
    if name not in INTERACTION_FORMATS:
        raise IngestError(f"unknown source format {name!r}; choose one of {sorted(INTERACTION_FORMATS)}")
    return INTERACTION_FORMATS[name]()


def label_format(name: str, attribute: str = "label") -> LineFormat:
    """Returns the reader of an attribute table format."""
    if name not in LABEL_FORMATS:
        raise IngestError(f"unknown label format {name!r}; choose one of {sorted(LABEL_FORMATS)}")
    return LABEL_FORMATS[name](attribute)


def item_format(name: str, rule: str) -> LineFormat:
    """Returns the reader of the item table a domain rule needs (MovieLens genres)."""
    if name not in ITEM_FORMATS:
        raise IngestError(f"domain rule {rule!r} needs an item table, which format {name!r} does not have; "
                          f"use a domain column instead (formats with item tables: {sorted(ITEM_FORMATS)})")
    return ITEM_FORMATS[name](rule)


def parse_chunk(fmt: LineFormat, chunk: Chunk, newlines_before: int) -> Iterator[Tuple[int, Union[Record, Reject]]]:
    """Yields (line number, record or Reject) for every line of a chunk (header skipped)."""
    for line_number, raw in iter_chunk_lines(chunk, newlines_before):
        records, reject = fmt.parse_raw(raw, chunk.file, line_number)
        if reject is not None:
            yield line_number, reject
        for record in records:
            yield line_number, record


def read_records(fmt: LineFormat, source_path: str, what: str = "source",
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Union[Record, Reject]]:
    """Reads every file of a source sequentially (small tables, tests): records and Rejects."""
    files = fmt.files(source_path, what)
    chunks = plan_chunks(files, chunk_bytes)
    before = first_line_numbers(chunks, {c.key: count_newlines(c) for c in chunks})
    for chunk in chunks:
        for _, value in parse_chunk(fmt, chunk, before[chunk.key]):
            yield value


def companion_path(source_path: str, default_name: str) -> str:
    """Returns the path of a table next to a MovieLens source (folder or file)."""
    folder = source_path if _is_dir(source_path) else os.path.dirname(source_path)
    return os.path.join(folder, default_name)


def iter_values(values: Iterable[Union[Record, Reject]]):
    """Splits an iterable of records and rejects into two lists (helper for tests/tools)."""
    records, rejects = [], []
    for value in values:
        (rejects if isinstance(value, Reject) else records).append(value)
    return records, rejects
