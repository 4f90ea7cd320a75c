r"""The vocabulary artifact: token <-> id with counts, ids sorted by frequency, fingerprinted.

One vocabulary is built over the source data and persisted; every later step (task
examples, fine-tuning, serving) loads it and checks its fingerprint, so ids never line up
"by luck" (docs/method.md section 5, defect 4). The same class serves the three kinds of
vocabulary in docs/architecture.md contract 2: item (reserved ids for padding, mask, [TCL],
unknown), target item (padding only) and label (no reserved ids).

File format (JSON, ``FORMAT_VERSION`` 1)::

    {"format_version": 1, "kind": "item", "reserved": [...],
     "tokens": [...], "counts": [...], "fingerprint": "sha256 hex"}

``tokens`` and ``counts`` list the non-reserved entries in id order.

Next to an item vocabulary the ingestion writes ``item_titles.tsv`` when the source has
titles (MovieLens item tables): ``token<TAB>title``, one line per vocabulary item with a
title, in id order, backslash, tab, newline and carriage return escaped as ``\\``,
``\t``, ``\n``, ``\r``. It travels in the same folder (the Vocabulary artifact) and only
labels items (TensorBoard's projector); it is not part of the fingerprint.
"""

import hashlib
import json
import os
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from peterrec.components import ids
from peterrec.components.records import IngestError

FORMAT_VERSION = 1
FILENAME = "vocabulary.json"
TITLES_FILENAME = "item_titles.tsv"

KIND_RESERVED = {
    "item": ids.ITEM_RESERVED_TOKENS,
    "target": ids.TARGET_RESERVED_TOKENS,
    "label": ids.LABEL_RESERVED_TOKENS,
}


class VocabularyError(ValueError):
    """A vocabulary file is malformed or does not match what a step expects."""


class VocabularyMismatchError(VocabularyError):
    """Two steps disagree on the vocabulary (their fingerprints differ)."""


def fingerprint_of(kind: str, reserved: Sequence[str], tokens: Sequence[str]) -> str:
    """Returns the SHA-256 hex digest of the kind and the ordered reserved and real tokens."""
    digest = hashlib.sha256()
    for part in (kind, *reserved, "\x1e", *tokens):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()


class Vocabulary:
    """An ordered token <-> id map with counts, reserved ids first, then by frequency.

    Build one with ``Vocabulary.from_counts``; persist it with ``save`` and ``load``.
    ``lookup`` maps unknown tokens to the unknown id of an item vocabulary and raises
    for target and label vocabularies, which have no unknown id.
    """

    def __init__(self, kind: str, tokens: Sequence[str], counts: Sequence[int]):
        if kind not in KIND_RESERVED:
            raise VocabularyError(f"unknown vocabulary kind {kind!r}; expected one of {sorted(KIND_RESERVED)}")
        if len(tokens) != len(counts):
            raise VocabularyError(f"{len(tokens)} tokens but {len(counts)} counts")
        self.kind = kind
        self.reserved: Tuple[str, ...] = tuple(KIND_RESERVED[kind])
        self.tokens: Tuple[str, ...] = tuple(str(t) for t in tokens)
        self.counts: Tuple[int, ...] = tuple(int(c) for c in counts)
        clash = set(self.reserved) & set(self.tokens)
        if clash:
            raise VocabularyError(f"tokens {sorted(clash)} collide with reserved tokens")
        self._ids: Dict[str, int] = {}
        for index, token in enumerate(self.reserved + self.tokens):
            if token in self._ids:
                raise VocabularyError(f"duplicate token {token!r}")
            self._ids[token] = index
        self.fingerprint = fingerprint_of(kind, self.reserved, self.tokens)

    @classmethod
    def from_counts(cls, kind: str, counts: Mapping[str, int], min_count: int = 1,
                    max_size: Optional[int] = None) -> "Vocabulary":
        """Builds a vocabulary from token counts: descending count, ties by token, stable.

        Tokens seen fewer than ``min_count`` times are left out (they map to unknown);
        ``max_size`` caps the number of real tokens.
        """
        kept = [(t, c) for t, c in counts.items() if c >= min_count]
        kept.sort(key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            kept = kept[:max_size]
        return cls(kind, [t for t, _ in kept], [c for _, c in kept])

    @property
    def num_reserved(self) -> int:
        """How many ids at the start are reserved."""
        return len(self.reserved)

    def __len__(self) -> int:
        """The total number of ids, reserved included (the embedding table's size)."""
        return len(self.reserved) + len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.fingerprint == other.fingerprint and self.counts == other.counts

    def __repr__(self) -> str:
        return f"Vocabulary(kind={self.kind!r}, size={len(self)}, fingerprint={self.fingerprint[:12]})"

    def lookup(self, token: str) -> int:
        """Returns the id of a token; unknown item tokens get ``ids.UNK_ID``."""
        found = self._ids.get(str(token))
        if found is not None:
            return found
        if self.kind == "item":
            return ids.UNK_ID
        raise KeyError(f"{token!r} is not in the {self.kind} vocabulary")

    def lookup_many(self, tokens: Iterable[str]) -> List[int]:
        """Returns the ids of several tokens (see ``lookup``)."""
        return [self.lookup(t) for t in tokens]

    def token(self, index: int) -> str:
        """Returns the token of an id."""
        if not 0 <= index < len(self):
            raise KeyError(f"id {index} is outside the {self.kind} vocabulary of size {len(self)}")
        if index < self.num_reserved:
            return self.reserved[index]
        return self.tokens[index - self.num_reserved]

    def all_tokens(self) -> List[str]:
        """Returns every token in id order, reserved tokens first."""
        return list(self.reserved + self.tokens)

    def count_of(self, index: int) -> int:
        """Returns how often the token of a real id was seen (0 for reserved ids)."""
        return 0 if index < self.num_reserved else self.counts[index - self.num_reserved]

    def check(self, expected_fingerprint: str, what: str = "this step") -> None:
        """Raises VocabularyMismatchError unless this vocabulary has the expected fingerprint."""
        if expected_fingerprint != self.fingerprint:
            raise VocabularyMismatchError(
                f"vocabulary mismatch for {what}: expected {self.kind} vocabulary fingerprint "
                f"{expected_fingerprint[:16]}..., found {self.fingerprint[:16]}... "
                f"({len(self)} ids). The data and the model were built with different "
                "vocabularies; rebuild one from the other's vocabulary artifact."
            )

    def to_json_dict(self) -> dict:
        """Returns the JSON-serialisable form written by ``save``."""
        return {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "reserved": list(self.reserved),
            "tokens": list(self.tokens),
            "counts": list(self.counts),
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json_dict(cls, data: Mapping, source: str = "<dict>") -> "Vocabulary":
        """Rebuilds a vocabulary from ``to_json_dict`` output, checking version and fingerprint."""
        try:
            version = data["format_version"]
            kind, tokens, counts = data["kind"], data["tokens"], data["counts"]
            stored = data["fingerprint"]
        except (KeyError, TypeError) as error:
            raise VocabularyError(f"{source}: not a vocabulary file (missing {error})") from error
        if version != FORMAT_VERSION:
            raise VocabularyError(f"{source}: vocabulary format {version}, this code reads {FORMAT_VERSION}")
        vocabulary = cls(kind, tokens, counts)
        if list(data.get("reserved", vocabulary.reserved)) != list(vocabulary.reserved):
            raise VocabularyError(f"{source}: reserved tokens {data.get('reserved')} differ from {list(vocabulary.reserved)}")
        if stored != vocabulary.fingerprint:
            raise VocabularyError(f"{source}: stored fingerprint does not match its tokens (file edited or corrupt)")
        return vocabulary

    def save(self, path: str) -> str:
        """Writes the vocabulary as JSON; ``path`` may be a directory (then FILENAME in it)."""
        import tensorflow as tf  # gfile reaches GCS/HDFS paths too

        if tf.io.gfile.isdir(path):
            path = os.path.join(path, FILENAME)
        with tf.io.gfile.GFile(path, "w") as handle:
            json.dump(self.to_json_dict(), handle)
        return path

    @classmethod
    def load(cls, path: str, expected_fingerprint: Optional[str] = None) -> "Vocabulary":
        """Reads a vocabulary written by ``save`` (a file or a directory holding FILENAME)."""
        import tensorflow as tf

        if tf.io.gfile.isdir(path):
            path = os.path.join(path, FILENAME)
        if not tf.io.gfile.exists(path):
            raise VocabularyError(f"no vocabulary at {path}")
        with tf.io.gfile.GFile(path, "r") as handle:
            try:
                data = json.load(handle)
            except json.JSONDecodeError as error:
                raise VocabularyError(f"{path}: not valid JSON ({error})") from error
        vocabulary = cls.from_json_dict(data, source=path)
        if expected_fingerprint is not None:
            vocabulary.check(expected_fingerprint, what=path)
        return vocabulary


def check_vocabulary(vocabulary, kind: str, expected_fingerprint: Optional[str] = None,
                     what: str = "this run") -> Vocabulary:
    """Loads (from a path) and checks a vocabulary: its kind and, if given, its fingerprint."""
    if isinstance(vocabulary, str):
        vocabulary = load_vocabulary(vocabulary)
    if not isinstance(vocabulary, Vocabulary):
        raise IngestError(f"expected a Vocabulary or a path to one, got {type(vocabulary).__name__}")
    if vocabulary.kind != kind:
        raise VocabularyError(f"{what} needs a {kind} vocabulary, got a {vocabulary.kind} vocabulary")
    if expected_fingerprint is not None:
        vocabulary.check(expected_fingerprint, what=what)
    return vocabulary


def load_vocabulary(path: str) -> Vocabulary:
    """Loads a vocabulary (folder or file) through Beam's file systems, without TensorFlow."""
    from apache_beam.io.filesystems import FileSystems

    if not path.endswith(".json"):
        path = os.path.join(path, FILENAME)
    if not FileSystems.exists(path):
        raise VocabularyError(f"no vocabulary at {path}")
    with FileSystems.open(path) as handle:
        try:
            data = json.loads(handle.read().decode("utf-8"))
        except ValueError as error:
            raise VocabularyError(f"{path}: not valid JSON ({error})") from error
    return Vocabulary.from_json_dict(data, source=path)


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESCAPES = {escaped[1]: plain for plain, escaped in _ESCAPES.items()}


def _escape_field(text: str) -> str:
    return "".join(_ESCAPES.get(char, char) for char in text)


def _unescape_field(text: str) -> str:
    return re.sub(r"\\(.)", lambda match: _UNESCAPES.get(match.group(1), match.group(0)), text)


def item_titles_tsv(vocabulary: Vocabulary, titles: Mapping[str, str]) -> str:
    """The text of ``TITLES_FILENAME``: the vocabulary's items that have a title, in id order ("" if none)."""
    return "".join(f"{_escape_field(token)}\t{_escape_field(titles[token])}\n"
                   for token in vocabulary.tokens if titles.get(token))


def write_item_titles(vocabulary: Vocabulary, titles: Mapping[str, str], directory: str) -> Optional[str]:
    """Writes ``TITLES_FILENAME`` into ``directory`` through Beam's file systems; returns its path.

    Nothing is written (and ``None`` returned) when no item of the vocabulary has a title.
    """
    from apache_beam.io.filesystems import FileSystems

    text = item_titles_tsv(vocabulary, titles)
    if not text:
        return None
    path = os.path.join(directory, TITLES_FILENAME)
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))
    return path


def load_item_titles(vocabulary_dir: str) -> Optional[Dict[str, str]]:
    """The item titles (token -> title) stored next to a vocabulary, or ``None`` when it has none.

    ``vocabulary_dir`` is a vocabulary folder or its ``vocabulary.json``. Raises
    VocabularyError on a line that is not ``token<TAB>title``.
    """
    import tensorflow as tf  # gfile reaches GCS/HDFS paths too, as the trainer reads them

    folder = vocabulary_dir if tf.io.gfile.isdir(vocabulary_dir) else os.path.dirname(vocabulary_dir)
    path = os.path.join(folder, TITLES_FILENAME)
    if not tf.io.gfile.exists(path):
        return None
    titles = {}
    with tf.io.gfile.GFile(path, "r") as handle:
        for number, line in enumerate(handle.read().split("\n"), start=1):
            if not line:
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise VocabularyError(f"{path} line {number}: expected token<TAB>title, found {len(fields)} fields")
            titles[_unescape_field(fields[0])] = _unescape_field(fields[1])
    return titles
