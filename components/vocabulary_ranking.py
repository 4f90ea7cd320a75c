"""A vocabulary's ids assigned in bounded pieces: no Beam step holds every token in one element.

``Vocabulary.from_counts`` orders tokens by descending count, ties by token. In Beam that
order is computed without gathering the tokens (``RankTokens``):

1. ``(token, count)`` pairs (counted per token with a combiner) below ``min_count`` are dropped;
2. within each count, tokens are cut into about ``PIECES`` ranges at approximate quantiles
   (``ApproximateQuantiles.PerKey``: its accumulator is bounded, whatever the data);
3. each piece ``(count, range)`` is sorted on its own worker;
4. the pieces' sizes (one number per piece) give each piece its first id: the reserved ids,
   then every token of a higher count or of an earlier range of the same count.

The ids are exact whatever the quantiles turn out to be: they only decide how the work is
cut. The output is one JSON line per piece (``[first id, count, [tokens]]``) and the
``(token, id)`` pairs that encoding steps look ids up in (``IdLookup``, over a
``beam.pvalue.AsDict``, which distributed runners serve without one worker holding it).
The launching process joins the piece lines into the ``Vocabulary`` artifact after the
run (``assemble``), the same object ``from_counts`` builds over the same counts.
"""

import bisect
import json
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

from peterrec.components import ids as ids_lib
from peterrec.components.vocabulary import KIND_RESERVED, Vocabulary

PIECES = 16   # ranges per count; a piece holds about 1/16 of the tokens sharing its count


def _piece_of(token_count: Tuple[str, int], boundaries: Mapping[int, Sequence[str]]):
    """``((count, range index), token)``: the piece a token is sorted in."""
    token, count = token_count
    cuts = boundaries.get(count, ())
    return (count, bisect.bisect_left(cuts[1:-1], token) if len(cuts) > 2 else 0), token


def _sorted_piece(keyed):
    key, tokens = keyed
    return key, sorted(tokens)


def piece_starts(sizes: Mapping[Tuple[int, int], int], num_reserved: int) -> Dict[Tuple[int, int], int]:
    """First id of each piece: pieces in (descending count, range) order after the reserved ids."""
    starts, next_id = {}, num_reserved
    for key in sorted(sizes, key=lambda k: (-k[0], k[1])):
        starts[key] = next_id
        next_id += sizes[key]
    return starts


def _piece_line(piece, starts) -> str:
    (count, index), tokens = piece
    return json.dumps([starts[(count, index)], count, tokens])


def _token_ids(piece, starts):
    key, tokens = piece
    first = starts[key]
    for offset, token in enumerate(tokens):
        yield token, first + offset


class RankTokens:
    """``(token, count)`` pairs -> ``(piece lines, (token, id) pairs)`` of a ``kind`` vocabulary.

    A ``PTransform``-like helper (``apply(counts)``) so that Beam is imported only when run.
    """

    def __init__(self, kind: str, min_count: int, label: str, pieces: int = PIECES):
        self._reserved = len(KIND_RESERVED[kind])
        self._min_count = min_count
        self._label = label
        self._pieces = pieces

    def apply(self, counts):
        """Adds the ranking steps after ``counts``; returns (piece lines, token ids)."""
        import apache_beam as beam
        from apache_beam.transforms.stats import ApproximateQuantiles

        label, min_count = self._label, self._min_count
        kept = counts | f"{label}Kept" >> beam.Filter(lambda tc: tc[1] >= min_count)
        boundaries = (kept
                      | f"{label}ByCount" >> beam.Map(lambda tc: (tc[1], tc[0]))
                      | f"{label}Ranges" >> ApproximateQuantiles.PerKey(self._pieces + 1))
        pieces = (kept
                  | f"{label}Piece" >> beam.Map(_piece_of, beam.pvalue.AsDict(boundaries))
                  | f"{label}GroupPieces" >> beam.GroupByKey()
                  | f"{label}SortPieces" >> beam.Map(_sorted_piece))
        starts = (pieces
                  | f"{label}PieceSizes" >> beam.Map(lambda piece: (piece[0], len(piece[1])))
                  | f"{label}AllSizes" >> beam.combiners.ToDict()
                  | f"{label}PieceStarts" >> beam.Map(piece_starts, self._reserved))
        starts = beam.pvalue.AsSingleton(starts)
        lines = pieces | f"{label}PieceLines" >> beam.Map(_piece_line, starts)
        token_ids = pieces | f"{label}TokenIds" >> beam.FlatMap(_token_ids, starts)
        return lines, token_ids


def assemble(kind: str, lines: Iterable[str]) -> Vocabulary:
    """The Vocabulary of a run's piece lines (any order); equal to ``from_counts`` over the same counts."""
    pieces = sorted(json.loads(line) for line in lines if line.strip())
    tokens: List[str] = []
    counts: List[int] = []
    for first, count, piece_tokens in pieces:
        if first != len(KIND_RESERVED[kind]) + len(tokens):
            raise ValueError(f"vocabulary pieces do not join: a piece starts at id {first}, "
                             f"after {len(tokens)} tokens")
        tokens.extend(piece_tokens)
        counts.extend([count] * len(piece_tokens))
    return Vocabulary(kind, tokens, counts)


class IdLookup:
    """Ids of tokens from a ``token -> id`` mapping (a side input), as ``Vocabulary.lookup_many`` gives them.

    Tokens outside the mapping get the unknown id (item vocabularies only have one).
    """

    def __init__(self, token_ids: Mapping[str, int]):
        self._ids = token_ids

    def lookup_many(self, tokens: Iterable[str]) -> List[int]:
        """The id of each token (``ids.UNK_ID`` for tokens outside the vocabulary)."""
        get, unknown = self._ids.get, ids_lib.UNK_ID
        return [get(token, unknown) for token in tokens]
