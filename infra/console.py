"""Progress output: every step says what it does and how long it took."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def say(message: str) -> None:
    print(message, flush=True)


def detail(message: str) -> None:
    print(f"    {message}", flush=True)


def seconds(elapsed: float) -> str:
    if elapsed < 60:
        return f"{elapsed:.1f}s"
    minutes, rest = divmod(int(elapsed), 60)
    return f"{minutes}m{rest:02d}s"


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print ``==> title``, run the body, then print how long it took (or that it failed)."""
    say(f"==> {title}")
    started = time.monotonic()
    try:
        yield
    except BaseException:
        say(f"    failed after {seconds(time.monotonic() - started)}")
        raise
    say(f"    done in {seconds(time.monotonic() - started)}")


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file, for error messages; empty if the file does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def indented(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines())


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
