"""Where the data starts: readers, Beam ingestion, the vocabulary and the example format.

This room imports none of the others; ``trainer``, ``serving`` and ``pipeline`` import
its contracts (``ids``, ``vocabulary``, ``example_format``).
"""
