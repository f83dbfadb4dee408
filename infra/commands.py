"""Running install and build commands with their output in a log file and progress on screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from infra.console import detail, indented, seconds, tail
from infra.errors import StepFailed

HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True)
class Progress:
    """How to summarise a command's output while it runs: count lines matching ``pattern``."""

    pattern: re.Pattern[str]
    unit: str


class _Counter:
    def __init__(self) -> None:
        self.count = 0
        self.last = ""
        self.lock = threading.Lock()


def run_logged(
    command: Sequence[str],
    *,
    log: Path,
    what: str,
    progress: Progress | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``command`` to completion; its output goes to ``log``, a heartbeat to the screen.

    On a non-zero exit, raise StepFailed naming ``what`` with the tail of the log.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    counter = _Counter()
    started = time.monotonic()
    full_env = {**os.environ, **(env or {})}
    executable = shutil.which(command[0])
    if executable is None:
        raise StepFailed(f"{what}: cannot run {command[0]!r}: not found on PATH")
    with (
        log.open("w", encoding="utf-8") as sink,
        subprocess.Popen(
            [executable, *command[1:]],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process,
    ):
        sink.write(f"$ {' '.join(command)}\n")
        sink.flush()
        reader = threading.Thread(
            target=_pump, args=(process, sink, counter, progress), daemon=True
        )
        reader.start()
        while True:
            try:
                code = process.wait(timeout=HEARTBEAT_SECONDS)
                break
            except subprocess.TimeoutExpired:
                _heartbeat(counter, progress, started)
        reader.join()
    if progress is not None and counter.count:
        detail(f"{counter.count} {progress.unit}")
    if code != 0:
        raise StepFailed(f"{what} failed (exit {code}); full log: {log}\n{indented(tail(log, 40))}")


def _pump(
    process: subprocess.Popen[str],
    sink: TextIO,
    counter: _Counter,
    progress: Progress | None,
) -> None:
    if process.stdout is None:
        return
    for line in process.stdout:
        sink.write(line)
        stripped = line.strip()
        if not stripped:
            continue
        with counter.lock:
            counter.last = stripped
            if progress is not None and progress.pattern.search(stripped):
                counter.count += 1


def _heartbeat(counter: _Counter, progress: Progress | None, started: float) -> None:
    with counter.lock:
        count, last = counter.count, counter.last
    elapsed = seconds(time.monotonic() - started)
    if progress is not None:
        detail(f"... {count} {progress.unit} so far ({elapsed}); last: {last[:90]}")
    else:
        detail(f"... still running ({elapsed}); last: {last[:90]}")
