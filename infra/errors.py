"""Failures of the infra tool. Each one names the step, port or process that failed."""

from __future__ import annotations


class InfraError(Exception):
    """A failure the user can act on; the CLI prints it without a traceback."""


class MissingTool(InfraError):
    """A program the set-up needs (JDK 17, Maven, Go, apt-get) is not available."""


class StepFailed(InfraError):
    """An install or build step exited non-zero; the message carries the tail of its log."""


class PortInUse(InfraError):
    """A port a service needs is already taken by a process infra did not start."""


class ProcessDied(InfraError):
    """A service process exited while it was starting."""


class NotReady(InfraError):
    """A service process is alive but never answered its readiness probe."""
