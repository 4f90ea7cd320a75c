"""Readers: raw files -> ``Interaction`` / ``LabelRecord`` / ``ItemRecord`` values or ``Reject``s.

The registry of reader formats: ``interaction_format``, ``label_format`` and
``item_format`` return the ``LineFormat`` (``line_format``) for a format's name. A line
that cannot be parsed becomes a ``Reject`` naming the reason, the file, the line number
and the line itself, so nothing is lost silently.

Files are read in byte-range chunks (``source_chunks``) with exact line numbers. The Beam
steps (``beam_steps.ReadTable``) read them in parallel; ``read_records`` reads them
sequentially, for small tables and tests.

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

from typing import Callable, Dict, Iterator, Union

from peterrec.components.attribute_tables import (
    GenericLabels, MovieLens1MUsers, MovieLens100KUsers, PeterRecLabels, ml_age_bucket)
from peterrec.components.interaction_formats import (
    GenericInteractions, MovieLens1MRatings, MovieLens100KRatings, PeterRecCsv)
from peterrec.components.item_tables import DOMAIN_RULES, MovieLens1MMovies, MovieLens100KItems
from peterrec.components.line_format import LineFormat, Record
from peterrec.components.records import IngestError, Reject
from peterrec.components.source_chunks import (
    DEFAULT_CHUNK_BYTES, SourceFile, companion_path, count_newlines, iter_chunk_lines, newlines_before_chunks,
    plan_chunks, read_first_line)

# Re-exported for callers that know formats through this module (pipeline config, benchmarks).
__all__ = ["INTERACTION_FORMATS", "LABEL_FORMATS", "ITEM_FORMATS", "DOMAIN_RULES", "interaction_format",
           "label_format", "item_format", "read_records", "LineFormat", "SourceFile", "companion_path",
           "read_first_line", "ml_age_bucket", "DEFAULT_CHUNK_BYTES"]

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


def read_records(fmt: LineFormat, source_path: str, what: str = "source",
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Iterator[Union[Record, Reject]]:
    """Reads every file of a source sequentially (small tables, tests): records and Rejects."""
    files = fmt.files(source_path, what)
    chunks = plan_chunks(files, chunk_bytes)
    before = newlines_before_chunks(chunks, {c.key: count_newlines(c) for c in chunks})
    for chunk in chunks:
        for line_number, raw in iter_chunk_lines(chunk, before[chunk.key]):
            records, reject = fmt.parse_raw(raw, chunk.file, line_number)
            if reject is not None:
                yield reject
            yield from records
