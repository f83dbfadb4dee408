"""The one user-to-partition hash. Every service routes with it; test vectors pin it."""

from __future__ import annotations

import hashlib


def stable_hash(user_id: int) -> int:
    """A 64-bit hash of the decimal user id: the same in every process, release and language.

    (Python's ``hash`` is salted per process, so it cannot route.)
    """
    digest = hashlib.blake2b(str(user_id).encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def partition_for(user_id: int, partitions: int) -> int:
    if partitions <= 0:
        raise ValueError(f"partition count must be positive, got {partitions}")
    return stable_hash(user_id) % partitions
