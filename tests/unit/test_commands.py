import re
from pathlib import Path

import pytest

from infra import commands
from infra.commands import Progress, run_logged
from infra.errors import StepFailed


def test_a_failing_step_names_itself_and_shows_its_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(StepFailed) as failure:
        run_logged(
            ["/bin/sh", "-c", "echo compiling; echo 'error: missing symbol' >&2; exit 2"],
            log=log,
            what="building the widget",
        )
    message = str(failure.value)
    assert message.startswith("building the widget failed (exit 2)")
    assert "error: missing symbol" in message
    assert str(log) in message


def test_a_missing_program_is_a_step_failure(tmp_path: Path) -> None:
    with pytest.raises(
        StepFailed, match=r"fetching: cannot run '/nonexistent/mvn': not found on PATH"
    ):
        run_logged(["/nonexistent/mvn"], log=tmp_path / "x.log", what="fetching")


def test_progress_counts_matching_lines_and_keeps_the_whole_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "HEARTBEAT_SECONDS", 0.05)
    log = tmp_path / "dl.log"
    run_logged(
        ["/bin/sh", "-c", "for i in 1 2 3; do echo Downloaded $i; sleep 0.1; done; echo other"],
        log=log,
        what="downloading",
        progress=Progress(re.compile(r"^Downloaded "), "files downloaded"),
    )
    out = capsys.readouterr().out
    assert "3 files downloaded" in out
    assert "so far" in out  # at least one heartbeat while it ran
    assert log.read_text().splitlines()[1:] == [
        "Downloaded 1",
        "Downloaded 2",
        "Downloaded 3",
        "other",
    ]


def test_restart_refuses_an_unknown_service_and_names_the_known_ones(tmp_path: Path) -> None:
    from infra import cli
    from infra.errors import InfraError
    from infra.layout import Layout
    from infra.services import Context

    ctx = Context(layout=Layout(project=tmp_path, state=tmp_path / ".infra", cache=tmp_path))
    with pytest.raises(InfraError, match=r"unknown service mesaging-m1; known: redis, kafka"):
        cli.restart(ctx, ["mesaging-m1"])


def test_dev_up_missing_and_restart_parse() -> None:
    from infra import cli

    assert cli._parser().parse_args(["up", "--missing"]).missing is True
    assert cli._parser().parse_args(["up"]).missing is False
    assert cli._parser().parse_args(["restart", "bff", "kafka"]).services == ["bff", "kafka"]
