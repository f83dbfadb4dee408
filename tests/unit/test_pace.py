"""When the send path and the fan-out skip Kafka's batching waits: below the line, and again
only once the rate falls well below it."""

from __future__ import annotations

from chatlib.pace import WINDOW_SECONDS, Pace


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_must_cross_the_line_and_come_back_well_below_it() -> None:
    clock = Clock()
    pace = Pace(100, clock=clock)
    assert pace.quick  # quiet until shown otherwise

    def second_at(rate: float) -> bool:
        """``rate`` records a second for one second, in notes of ten; the last answer."""
        answer = True
        for _ in range(int(rate / 10)):
            clock.now += 10 / rate
            answer = pace.note(10)
        return answer

    assert second_at(90)
    assert not second_at(150)  # busy: batch
    assert not second_at(80)  # not yet quiet: two thirds of the line is 66
    assert second_at(50)
    # Nothing for a while counts as quiet once anything comes again.
    assert not second_at(500)
    clock.now += 30 * WINDOW_SECONDS
    assert pace.note(0)


def test_a_line_of_zero_always_batches() -> None:
    pace = Pace(0)
    assert not pace.quick
    assert not pace.note(1)
