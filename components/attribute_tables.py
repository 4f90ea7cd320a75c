"""Attribute tables: a user's class label (gender, age, occupation...) for attribute tasks.

MovieLens ``users.dat`` (``user::gender::age::occupation::zip``), MovieLens-100K
``u.user`` (``user|age|gender|occupation|zip``; ages are bucketed like ML-1M's), a
generic ``user,label`` CSV with a header, and the target field of a PeterRec CSV.
"""

import dataclasses
from typing import Dict

from peterrec.components.interaction_formats import peterrec_user
from peterrec.components.line_format import (
    LABEL_COLUMNS, USER_COLUMNS, LineFormat, find_column, header_columns, parse_numeric_id, parse_token_id,
    sniff_delimiter, split_delimited, split_fields)
from peterrec.components.records import EMPTY_LABEL, MALFORMED_LINE, BadLine, IngestError, LabelRecord
from peterrec.components.source_chunks import SourceFile

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
        delimiter = sniff_delimiter(header)
        columns = header_columns(header, delimiter)
        if len(columns) < 2:
            raise IngestError(f"{source.path}: a label table needs a header with at least two "
                              f"columns (user,label), found {list(columns)}")
        user = find_column(columns, USER_COLUMNS, source.path, required=False)
        label = find_column(columns, (self.attribute.lower(),) + LABEL_COLUMNS, source.path, required=False)
        positions = (0 if user is None else user, 1 if label is None else label)
        return dataclasses.replace(source, columns=columns, delimiter=delimiter, positions=positions)

    def parse(self, text, source, line_number):
        fields = split_delimited(text, source.delimiter)
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
        return [self._label(peterrec_user(source, line_number), tokens[0], source, line_number, text)]

