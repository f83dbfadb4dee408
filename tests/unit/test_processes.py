"""The process manager against real OS processes (no network)."""

import json
import os
import sys
import time
from pathlib import Path

import pytest
from cassandra import AuthenticationFailed
from cassandra.cluster import NoHostAvailable

from infra import processes
from infra.errors import NotReady, ProcessDied
from infra.services.cassandra import refused_login


def _spawn(tmp_path: Path, script: str) -> tuple[Path, Path, int]:
    pidfile, log = tmp_path / "pid.json", tmp_path / "svc.log"
    pid = processes.spawn(["/bin/sh", "-c", script], pidfile=pidfile, log=log)
    return pidfile, log, pid


def test_a_process_that_dies_while_starting_is_reported_at_once_with_its_log(
    tmp_path: Path,
) -> None:
    pidfile, log = tmp_path / "pid.json", tmp_path / "svc.log"
    pid = processes.spawn(
        ["/bin/sh", "-c", "echo 'bad config: unknown key foo' >&2; exit 3"],
        pidfile=pidfile,
        log=log,
    )
    with pytest.raises(ProcessDied) as failure:
        # A long timeout: the failure must come from the exit, not from the deadline.
        processes.wait_ready("svc", pid, lambda: False, log=log, timeout=600, pidfile=pidfile)
    message = str(failure.value)
    assert "exited with code 3" in message
    assert "bad config: unknown key foo" in message
    assert not pidfile.exists()


def test_a_live_process_that_never_answers_times_out_with_its_log(tmp_path: Path) -> None:
    pidfile, log, _ = _spawn(tmp_path, "echo still booting; exec sleep 30")
    try:
        with pytest.raises(NotReady, match="still booting"):
            processes.wait_ready("svc", None, lambda: False, log=log, timeout=0.2)
    finally:
        processes.stop(pidfile, grace=5)


def test_stop_terminates_the_recorded_process_and_removes_its_pidfile(tmp_path: Path) -> None:
    pidfile, _, pid = _spawn(tmp_path, "exec sleep 60")
    assert processes.alive(pidfile) is not None
    stopped = processes.stop(pidfile, grace=5)
    assert stopped is not None
    assert stopped.pid == pid
    assert processes.start_ticks(pid) is None
    assert not pidfile.exists()


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    pidfile, log, pid = _spawn(tmp_path, "trap '' TERM; echo trapped; while :; do sleep 1; done")
    deadline = time.monotonic() + 10
    while "trapped" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    processes.stop(pidfile, grace=0.5)
    assert processes.start_ticks(pid) is None


def test_a_pidfile_whose_pid_was_reused_is_stale_and_nothing_is_signalled(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "pid.json"
    # This very test process, recorded with a start time it does not have: as after a reboot.
    ticks = processes.start_ticks(os.getpid())
    assert ticks is not None
    pidfile.write_text(json.dumps({"pid": os.getpid(), "start_ticks": ticks + 1, "command": "x"}))
    assert processes.alive(pidfile) is None
    assert not pidfile.exists()
    assert processes.stop(pidfile, grace=1) is None


def test_resident_memory_of_this_process_is_readable() -> None:
    rss = processes.resident_kib(os.getpid())
    assert rss is not None
    assert rss > 1024  # a Python interpreter is well over 1 MiB
    assert sys.platform.startswith("linux")


def test_a_cassandra_probe_reads_either_shape_of_the_drivers_no_host_error() -> None:
    """The driver names errors by host when it reached no node, and lists bare addresses when
    its control connection was made but the session's pool was not (a node half up)."""
    refused = NoHostAvailable("no", {"127.0.0.2:9042": AuthenticationFailed("bad login")})
    unreachable = NoHostAvailable("no", {"127.0.0.2:9042": OSError("refused")})
    half_up = NoHostAvailable("Unable to connect to any servers", ["127.0.0.2:9042"])
    assert refused_login(refused)
    assert not refused_login(unreachable)
    assert not refused_login(half_up)
