"""Interaction formats: MovieLens-1M/100K ratings, a generic CSV with a header, PeterRec CSV.

Each parses one line into ``Interaction``s (see ``readers`` for the formats' layout);
``peterrec_user`` numbers PeterRec CSV users by line, which the PeterRec label format
shares.
"""

import dataclasses
from typing import List, Optional, Tuple

from peterrec.components.line_format import (
    DOMAIN_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS, USER_COLUMNS, LineFormat, check_rating, find_column,
    header_columns, parse_numeric_id, parse_timestamp, parse_token_id, sniff_delimiter, split_delimited,
    split_fields)
from peterrec.components.records import MALFORMED_LINE, NO_ITEMS, BadLine, Interaction
from peterrec.components.source_chunks import SourceFile


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


class GenericInteractions(LineFormat):
    """Delimited interactions with a header: user, item, timestamp and optional domain."""

    name = "csv"
    has_header = True

    def with_header(self, source, header):
        delimiter = sniff_delimiter(header)
        columns = header_columns(header, delimiter)
        positions = tuple(find_column(columns, names, source.path)
                          for names in (USER_COLUMNS, ITEM_COLUMNS, TIME_COLUMNS))
        positions += (find_column(columns, DOMAIN_COLUMNS, source.path, required=False),)
        return dataclasses.replace(source, columns=columns, delimiter=delimiter, positions=positions)

    def parse(self, text, source, line_number):
        columns = source.columns
        fields = split_delimited(text, source.delimiter)
        if len(fields) != len(columns):
            raise BadLine(MALFORMED_LINE, f"expected {len(columns)} fields {list(columns)}, found {len(fields)}")
        user_at, item_at, time_at, domain_at = source.positions
        user = parse_token_id(fields[user_at], "user id")
        item = parse_token_id(fields[item_at], "item id")
        timestamp = parse_timestamp(fields[time_at])
        domain = (fields[domain_at].strip() or None) if domain_at is not None else None
        return [Interaction(user, item, timestamp, source.index, line_number, 0, domain)]


def peterrec_user(source: SourceFile, line_number: int) -> str:
    """The user id of a PeterRec CSV line: its line number, prefixed by the file index after the first file."""
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
        user = peterrec_user(source, line_number)
        records = [Interaction(user, item, position, source.index, line_number, position, "source")
                   for position, item in enumerate(source_items)]
        offset = len(source_items)
        records.extend(Interaction(user, item, offset + k, source.index, line_number, offset + k, "target")
                       for k, item in enumerate(target_items or ()))
        return records

