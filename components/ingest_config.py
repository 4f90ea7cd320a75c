"""What an ingestion reads and how: ``IngestConfig``, and the files it names.

The task pipelines extend ``IngestConfig`` (``task_config``); ``source_files`` and
``item_table`` turn a config into the files the readers open.
"""

import dataclasses
import json
import os
import re
from typing import List, Optional, Tuple

from peterrec.components import readers
from peterrec.components.records import IngestError
from peterrec.components.source_chunks import SourceFile, is_folder

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
DEFAULT_SPLIT_FRACTIONS = (("train", 0.8), ("eval", 0.1), ("test", 0.1))


def _normalise_fractions(value) -> Tuple[Tuple[str, float], ...]:
    if isinstance(value, dict):
        value = list(value.items())
    try:
        return tuple((str(name), float(fraction)) for name, fraction in value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"split_fractions must be (name, fraction) pairs, got {value!r}") from error


@dataclasses.dataclass
class IngestConfig:
    """What to ingest and how (see the module docstring).

    ``source_format``: ``movielens-1m``, ``movielens-100k``, ``csv`` or ``peterrec-csv``;
    ``source_path``: a MovieLens folder, or a file, folder or glob of CSV files;
    ``domain``: keep only interactions of this domain in the sequences (e.g. ``source``
    for pretraining on source items before a cold-start task); ``domain_rule``: how
    MovieLens items get a domain (``movielens-genre``), generic CSVs use their ``domain``
    column and PeterRec CSVs their two fields (there ``domain`` defaults to ``source``).
    """

    source_format: str
    source_path: str
    max_len: Optional[int] = None    # cap on the items kept per user; None keeps whole histories
    split_fractions: Tuple[Tuple[str, float], ...] = DEFAULT_SPLIT_FRACTIONS
    split_salt: str = ""
    max_reject_fraction: float = 0.01
    min_item_count: int = 1
    domain: Optional[str] = None
    domain_rule: Optional[str] = None
    num_shards: int = 0           # files a split; 0 = one per 64 MiB of input (output_files), never the runner's choice
    chunk_bytes: int = 0          # bytes per read chunk; 0 = sized from the input and the workers

    def __post_init__(self):
        self.split_fractions = _normalise_fractions(self.split_fractions)

    @property
    def split_names(self) -> Tuple[str, ...]:
        """The split names, in the order of ``split_fractions``."""
        return tuple(name for name, _ in self.split_fractions)

    @property
    def effective_domain(self) -> Optional[str]:
        """The domain kept in sequences (PeterRec CSVs keep their source field by default)."""
        if self.domain is None and self.source_format == "peterrec-csv":
            return "source"
        return self.domain

    def validate(self) -> None:
        """Raises ValueError with a clear message on settings that cannot work."""
        if self.source_format not in readers.INTERACTION_FORMATS:
            raise ValueError(f"source_format {self.source_format!r} is not one of "
                             f"{sorted(readers.INTERACTION_FORMATS)}")
        if not self.source_path:
            raise ValueError("source_path is empty")
        if self.max_len is not None and (isinstance(self.max_len, bool) or not isinstance(self.max_len, int)
                                         or self.max_len < 1):
            raise ValueError(f"max_len must be a positive integer or None (no cap), got {self.max_len!r}")
        names = self.split_names
        if not names:
            raise ValueError("split_fractions is empty")
        if len(set(names)) != len(names):
            raise ValueError(f"split names repeat: {list(names)}")
        for name, fraction in self.split_fractions:
            if not _SPLIT_NAME.match(name):
                raise ValueError(f"split name {name!r} may only use letters, digits, '_' and '-'")
            if fraction < 0:
                raise ValueError(f"split {name!r} has a negative fraction {fraction}")
        if sum(f for _, f in self.split_fractions) <= 0:
            raise ValueError("split fractions must add up to a positive number")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise ValueError(f"max_reject_fraction must be within [0, 1], got {self.max_reject_fraction}")
        if not isinstance(self.min_item_count, int) or self.min_item_count < 1:
            raise ValueError(f"min_item_count must be an integer >= 1, got {self.min_item_count!r}")
        if not isinstance(self.num_shards, int) or self.num_shards < 0:
            raise ValueError(f"num_shards must be an integer >= 0 (0: one per 64 MiB of input), "
                             f"got {self.num_shards!r}")
        if self.chunk_bytes < 0:
            raise ValueError(f"chunk_bytes must be >= 0, got {self.chunk_bytes}")
        if self.domain_rule is not None:
            if self.domain_rule not in readers.DOMAIN_RULES:
                raise ValueError(f"domain_rule {self.domain_rule!r} is not one of {sorted(readers.DOMAIN_RULES)}")
            if self.source_format not in readers.ITEM_FORMATS:
                raise ValueError(f"domain_rule {self.domain_rule!r} needs an item table, which "
                                 f"{self.source_format!r} sources do not have; generic CSVs use their "
                                 "'domain' column, PeterRec CSVs their source/target fields")
        if self.domain is not None and self.source_format in readers.ITEM_FORMATS and self.domain_rule is None:
            raise ValueError(f"domain={self.domain!r} needs a domain_rule for {self.source_format!r} "
                             f"(MovieLens has no domain column), e.g. domain_rule='movielens-genre'")

    def to_json(self) -> str:
        """Serialises the config (TFX execution properties, logs)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IngestConfig":
        """Reads a config written by ``to_json`` (unknown keys are an error)."""
        return cls(**json.loads(text))



def source_files(config: IngestConfig) -> List[SourceFile]:
    """Lists the source files, checking that a domain filter has a domain column."""
    fmt = readers.interaction_format(config.source_format)
    files = fmt.files(config.source_path, "source")
    if config.source_format == "csv" and config.domain is not None:
        missing = [f.path for f in files if f.positions[3] is None]
        if missing:
            raise IngestError(f"domain={config.domain!r} needs a 'domain' column, which {missing[0]} has not "
                              f"(header {list(files[0].columns)})")
    return files


def item_table(config: IngestConfig) -> Tuple[Optional[readers.LineFormat], Optional[List[SourceFile]]]:
    """Returns (item format, item files) for a domain rule, or (None, None)."""
    if config.domain_rule is None:
        return None, None
    fmt = readers.item_format(config.source_format, config.domain_rule)
    folder = config.source_path if is_folder(config.source_path) else os.path.dirname(config.source_path)
    return fmt, fmt.files(folder, "item table")
