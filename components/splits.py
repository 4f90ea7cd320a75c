"""Deterministic user-level splits: a user's split depends only on their id and a salt.

No user is ever in two splits (docs/method.md section 5, defect 6), and the same user lands
in the same split in every run, on every machine and every Beam runner.
"""

import hashlib
from typing import Sequence, Tuple

DEFAULT_FRACTIONS: Tuple[Tuple[str, float], ...] = (("train", 0.8), ("eval", 0.1), ("test", 0.1))


def user_bucket(user_id: str, salt: str = "") -> float:
    """Maps a user id to a number in [0, 1) with a stable hash (not Python's ``hash``)."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(user_id: str, fractions: Sequence[Tuple[str, float]] = DEFAULT_FRACTIONS,
                 salt: str = "") -> str:
    """Returns the split name of a user: fractions are cumulative buckets over the hash."""
    total = sum(f for _, f in fractions)
    if total <= 0:
        raise ValueError(f"split fractions must add up to a positive number, got {fractions}")
    point = user_bucket(user_id, salt) * total
    cumulative = 0.0
    for name, fraction in fractions:
        cumulative += fraction
        if point < cumulative:
            return name
    return fractions[-1][0]
