"""Whether traffic is light enough to skip Kafka's batching waits.

Kafka's clients trade latency for CPU: a producer that lingers a few milliseconds sends fewer,
fuller requests, and a fetch the broker holds until 64 KiB are there (or 10 ms) costs both
sides less than one answered at the first byte. At a few hundred records a second those
waits are most of a message's latency and save little; at thousands they save a third of
the CPU (docs/benchmarks-notes.md, "Batching that follows the rate"). Neither client can
change its waits while it runs, so the send path and the fan-out each keep two clients, one
that waits and one that does not, and ask a ``Pace`` which to use.

The rate is counted over windows of ``WINDOW_SECONDS``; traffic goes busy above ``busy``
records a second and quiet again below two thirds of it, so a rate near the line does not
flip the choice at every window.
"""

from __future__ import annotations

import time
from collections.abc import Callable

WINDOW_SECONDS = 0.5


class Pace:
    def __init__(self, busy: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        #: Records a second above which batching pays (0: always batch).
        self.busy = busy
        self._quiet = busy * 2 / 3
        self._now = clock
        self._started = self._now()
        self._count = 0
        self.quick = busy > 0

    def note(self, records: int) -> bool:
        """Count ``records`` handled now; whether to skip the batching waits from now on."""
        if self.busy <= 0:
            return False
        now = self._now()
        elapsed = now - self._started
        if elapsed >= WINDOW_SECONDS:
            # The window (longer when nothing came for a while) gives the rate.
            rate = self._count / elapsed
            if self.quick and rate > self.busy:
                self.quick = False
            elif not self.quick and rate < self._quiet:
                self.quick = True
            self._started, self._count = now, 0
        self._count += records
        return self.quick
