"""The settings of the two task pipelines: ``AttributeTaskConfig`` and ``ColdStartTaskConfig``.

Both extend ``IngestConfig`` (the source, splits and reject limits) with where the task's
labels come from: an attribute table, or the target domain of the same interactions.
"""

import dataclasses
from typing import Optional

from peterrec.components import readers
from peterrec.components.ingest_config import IngestConfig


@dataclasses.dataclass
class AttributeTaskConfig(IngestConfig):
    """An attribute (user profile) task: the ingestion settings plus where labels come from.

    ``label_format``: ``movielens-1m``, ``movielens-100k``, ``csv`` or ``peterrec-csv``
    (default: the source format); ``label_path``: the attribute table (default: the
    MovieLens users table next to the source, or the PeterRec CSV itself); ``attribute``:
    ``gender``, ``age`` or ``occupation`` for MovieLens, the label column's name for CSV.
    """

    label_format: Optional[str] = None
    label_path: Optional[str] = None
    attribute: str = "label"

    @property
    def effective_label_format(self) -> str:
        """The attribute table's format (defaults to the source format)."""
        return self.label_format or self.source_format

    def validate(self) -> None:
        """Checks the ingestion settings and the label source."""
        super().validate()
        fmt = self.effective_label_format
        if fmt not in readers.LABEL_FORMATS:
            raise ValueError(f"label_format {fmt!r} is not one of {sorted(readers.LABEL_FORMATS)}")
        attributes = getattr(readers.LABEL_FORMATS[fmt], "attributes", {})
        if attributes and self.attribute not in attributes:
            raise ValueError(f"attribute {self.attribute!r} is not in {fmt} user tables; "
                             f"choose one of {sorted(attributes)}")
        if fmt == "csv" and not self.label_path:
            raise ValueError("label_format 'csv' needs label_path (a user,label file)")

    def label_source(self) -> str:
        """The path of the attribute table."""
        if self.label_path:
            return self.label_path
        fmt = self.effective_label_format
        if fmt == "peterrec-csv":
            return self.source_path
        return readers.companion_path(self.source_path, readers.LABEL_FORMATS[fmt].default_file)


@dataclasses.dataclass
class ColdStartTaskConfig(IngestConfig):
    """A cold-start task: source-domain sequences, target-domain items as labels.

    ``source_domain``/``target_domain`` name the two domains (the domain column's values,
    or ``source``/``target`` for rules and PeterRec CSVs); ``max_target_items`` caps the
    target items of train users (earliest kept), ``None`` keeps them all.
    """

    source_domain: str = "source"
    target_domain: str = "target"
    max_target_items: Optional[int] = None

    def validate(self) -> None:
        """Checks the ingestion settings and that the data has two domains."""
        super().validate()
        if self.source_domain == self.target_domain:
            raise ValueError(f"source and target domain are both {self.source_domain!r}")
        if self.source_format in readers.ITEM_FORMATS and self.domain_rule is None:
            raise ValueError(f"a cold-start task on {self.source_format} needs a domain_rule "
                             f"(e.g. 'movielens-genre') to split items into two domains")
        if self.max_target_items is not None and (not isinstance(self.max_target_items, int)
                                                  or self.max_target_items < 1):
            raise ValueError(f"max_target_items must be a positive integer or None, got {self.max_target_items!r}")

