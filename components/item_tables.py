"""Item tables: each MovieLens movie gets a domain by a ``DOMAIN_RULES`` rule on its genres, and its title.

A domain rule splits items into a ``source`` and a ``target`` domain (cold-start tasks,
pretraining on source items only); generic CSVs and PeterRec CSVs carry their domains on
the interaction lines instead, and have no item table (so no titles). Read without a rule
(``rule=None``) an item table gives titles only: they label the items in TensorBoard's
projector (``vocabulary.TITLES_FILENAME``).
"""

from typing import Callable, Dict, List, Optional, Sequence

from peterrec.components.line_format import LineFormat, parse_numeric_id
from peterrec.components.records import MALFORMED_ITEM_LINE, MALFORMED_LINE, BadLine, IngestError, ItemRecord

ML_TARGET_GENRES = frozenset({"Action", "Horror", "Sci-Fi", "Thriller"})
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western")


def movielens_genre_domain(genres: Sequence[str]) -> str:
    """The ``movielens-genre`` rule: first-listed genre in ML_TARGET_GENRES -> "target"."""
    return "target" if genres and genres[0] in ML_TARGET_GENRES else "source"


DOMAIN_RULES: Dict[str, Callable[[Sequence[str]], str]] = {"movielens-genre": movielens_genre_domain}


class _ItemFormat(LineFormat):
    """Base of item tables: ``rule`` maps an item's genres to its domain (``None``: no domains)."""

    def __init__(self, rule: Optional[str] = None):
        if rule is not None and rule not in DOMAIN_RULES:
            raise IngestError(f"unknown domain rule {rule!r}; known rules: {sorted(DOMAIN_RULES)}")
        self.rule = DOMAIN_RULES[rule] if rule is not None else None

    def record(self, item_field: str, title: str, genres: Sequence[str]) -> List[ItemRecord]:
        """The line's record: canonical item id, the rule's domain, the title (``None`` if blank)."""
        domain = self.rule(genres) if self.rule is not None else None
        return [ItemRecord(parse_numeric_id(item_field, "item id"), domain, title.strip() or None)]

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
        return self.record(fields[0], "::".join(fields[1:-1]), genres)


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
        # A title holding '|' spans several fields: everything between the id and the 3 date/url fields.
        return self.record(fields[0], "|".join(fields[1:len(fields) - len(ML100K_GENRES) - 3]), genres)

