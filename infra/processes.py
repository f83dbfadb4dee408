"""Starting, finding and stopping service processes by pid.

A pid file records the pid and the process start time read from /proc, so a pid that the kernel
has since reused for another program is never mistaken for ours (and never signalled).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from infra.console import indented, tail
from infra.errors import InfraError, NotReady, PortInUse, ProcessDied

# Each start appends this line to the service log, so errors can show only the latest run.
RUN_MARKER = "\n--- started "


def latest_run(log: Path, lines: int = 30) -> str:
    """The tail of ``log`` since the process was last started."""
    text = tail(log, lines=400)
    marker = text.rfind(RUN_MARKER.strip())
    if marker >= 0:
        text = text[marker:]
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True)
class Tracked:
    pid: int
    start_ticks: int
    command: str


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    state = fields[0]
    if state == "Z":
        return None
    return int(fields[19])


def read_pidfile(path: Path) -> Tracked | None:
    try:
        raw = json.loads(path.read_text())
        return Tracked(
            pid=int(raw["pid"]), start_ticks=int(raw["start_ticks"]), command=raw["command"]
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def alive(path: Path) -> Tracked | None:
    """The process recorded in ``path`` if it still runs; clears a stale pid file."""
    tracked = read_pidfile(path)
    if tracked is None:
        return None
    if start_ticks(tracked.pid) != tracked.start_ticks:
        path.unlink(missing_ok=True)
        return None
    return tracked


def resident_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def port_holder(port: int) -> str:
    """Best-effort description of who listens on ``port`` (via ``ss``), for error messages."""
    try:
        result = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown process"
    line = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
    marker = line.find("users:(")
    return line[marker:] if marker >= 0 else "unknown process"


def check_ports_free(
    service: str, ports: Mapping[str, int], host: str = "127.0.0.1", *, wait: float = 0.0
) -> None:
    """Raise PortInUse naming the first port of ``service`` that something already holds.

    ``wait`` gives a process that was just killed time to let go of its ports.
    """
    deadline = time.monotonic() + wait
    for purpose, port in ports.items():
        while not _bindable(host, port):
            if time.monotonic() >= deadline:
                raise PortInUse(
                    f"{service}: port {port} ({purpose}) on {host} is already in use by "
                    f"{port_holder(port)}; stop that process or free the port"
                )
            time.sleep(0.2)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As servers do: connections of a stopped server lingering in TIME_WAIT must not
        # count as "in use", only a socket that still listens.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            return False
    return True


def spawn(
    command: Sequence[str],
    *,
    pidfile: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``command`` in its own session, output appended to ``log``; returns the pid.

    posix_spawn rather than subprocess.Popen: the process is meant to outlive this tool, and a
    Popen object dropped while its child runs is a leak warning, not a daemon.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as sink:
        sink.write(f"{RUN_MARKER}{time.strftime('%Y-%m-%dT%H:%M:%S%z')}: {' '.join(command)}\n")
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawnp(
            command[0],
            list(command),
            {**os.environ, **(env or {})},
            file_actions=file_actions,
            setsid=True,
        )
    except OSError as exc:
        raise InfraError(f"cannot start {command[0]!r}: {exc.strerror}") from exc
    ticks = start_ticks(pid)
    pidfile.write_text(
        json.dumps({"pid": pid, "start_ticks": ticks or 0, "command": command[0]}) + "\n"
    )
    return pid


def exit_code(pid: int) -> int | None:
    """The exit code of our child ``pid`` if it has exited (reaping it), else None."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child (started by an earlier ./dev): alive as long as /proc says so.
        return None if start_ticks(pid) is not None else -1
    if reaped == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def wait_ready(
    service: str,
    pid: int | None,
    probe: Callable[[], bool],
    *,
    log: Path,
    timeout: float,
    pidfile: Path | None = None,
) -> None:
    """Poll ``probe`` until it answers; fail at once, with the log tail, if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        code = None if pid is None else exit_code(pid)
        if code is not None:
            if pidfile is not None:
                pidfile.unlink(missing_ok=True)
            raise ProcessDied(
                f"{service} exited with code {code} while starting; "
                f"log: {log}\n{indented(latest_run(log))}"
            )
        if probe():
            return
        if time.monotonic() > deadline:
            raise NotReady(
                f"{service} did not become ready within {timeout:.0f}s; log: {log}\n"
                f"{indented(latest_run(log))}"
            )
        time.sleep(0.5)


def stop(pidfile: Path, *, grace: float) -> Tracked | None:
    """SIGTERM the recorded process group, SIGKILL it after ``grace`` seconds. Returns what ran."""
    tracked = alive(pidfile)
    if tracked is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(tracked.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if start_ticks(tracked.pid) != tracked.start_ticks:
            break
        reap(tracked.pid)
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tracked.pid, signal.SIGKILL)
        while start_ticks(tracked.pid) == tracked.start_ticks:
            reap(tracked.pid)
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return tracked


def reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (started by this same command)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
