"""The recent deliveries of the partitions this server feeds, held in memory for resumes.

The fan-out sees every record of its partitions anyway; keeping the newest few megabytes of
each partition, indexed by recipient (group records, which list their members, are kept
beside), lets a client that reconnects after a short break (a
network drop, a redirect after a partition move) replay exactly its own missed events without
touching Kafka. Older gaps fall back to ``messaging/streams/replay.py``.

Records are kept as the raw bytes Kafka gave (decoded only when replayed) and evicted oldest
first, so a partition's log always holds every record of ``[first, next)``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from prometheus_client import Gauge

HELD_BYTES = Gauge("messaging_recent_bytes", "Bytes of recent deliveries held for resumes")
#: Python's own cost of holding one record (tuples, deque slots, the per-user index).
OVERHEAD_BYTES = 240


class _PartitionLog:
    __slots__ = ("by_user", "entries", "first", "groups", "held")

    def __init__(self, first: int) -> None:
        #: Every record from this offset up to the last one added is held.
        self.first = first
        #: (offset, recipient) of each record held, oldest first; the recipient is None for a
        #: group record.
        self.entries: deque[tuple[int, int | None]] = deque()
        self.by_user: dict[int, deque[tuple[int, bytes]]] = {}
        #: Group records: (offset, the members they list, value), oldest first. Not indexed
        #: per member: a replay looks through them (a few thousand at most), which costs
        #: less than indexing every member of every group message as it passes.
        self.groups: deque[tuple[int, frozenset[int], bytes]] = deque()
        self.held = 0


class RecentDeliveries:
    def __init__(self, budget_per_partition: int) -> None:
        self._budget = budget_per_partition
        self._logs: dict[int, _PartitionLog] = {}

    def start(self, partition: int, offset: int) -> None:
        """The fan-out starts feeding ``partition`` at ``offset``: nothing before it is held."""
        self.stop(partition)
        self._logs[partition] = _PartitionLog(offset)

    def stop(self, partition: int) -> None:
        log = self._logs.pop(partition, None)
        if log is not None:
            HELD_BYTES.dec(log.held)

    def add(self, partition: int, offset: int, recipient: int, value: bytes) -> None:
        log = self._logs.get(partition)
        if log is None:
            return
        log.entries.append((offset, recipient))
        user_log = log.by_user.get(recipient)
        if user_log is None:
            user_log = log.by_user[recipient] = deque()
        user_log.append((offset, value))
        self._held(log, len(value) + OVERHEAD_BYTES)

    def add_group(self, partition: int, offset: int, members: Iterable[int], value: bytes) -> None:
        """A group record, for the ``members`` it lists."""
        log = self._logs.get(partition)
        if log is None:
            return
        log.entries.append((offset, None))
        log.groups.append((offset, frozenset(members), value))
        # The members' set costs about as much again as its ids in the value.
        self._held(log, 2 * len(value) + OVERHEAD_BYTES)

    def _held(self, log: _PartitionLog, size: int) -> None:
        log.held += size
        HELD_BYTES.inc(size)
        while log.held > self._budget and log.entries:
            old_offset, old_recipient = log.entries.popleft()
            if old_recipient is None:
                _, _, old_value = log.groups.popleft()
                freed = 2 * len(old_value) + OVERHEAD_BYTES
            else:
                old_log = log.by_user[old_recipient]
                _, old_value = old_log.popleft()
                if not old_log:
                    del log.by_user[old_recipient]
                freed = len(old_value) + OVERHEAD_BYTES
            log.held -= freed
            HELD_BYTES.dec(freed)
            log.first = old_offset + 1

    def covers(self, partition: int, after: int) -> bool:
        """True if every record of ``partition`` after offset ``after`` is held."""
        log = self._logs.get(partition)
        return log is not None and log.first <= after + 1

    def replay(self, partition: int, user: int, after: int, before: int) -> list[tuple[int, bytes]]:
        """(offset, value) of ``user``'s records with ``after < offset < before``, in order."""
        log = self._logs.get(partition)
        if log is None:
            return []
        found = [
            (offset, value)
            for offset, value in log.by_user.get(user, ())
            if after < offset < before
        ]
        grouped = [
            (offset, value)
            for offset, members, value in log.groups
            if after < offset < before and user in members
        ]
        if grouped:
            found = sorted(found + grouped, key=lambda entry: entry[0])
        return found
