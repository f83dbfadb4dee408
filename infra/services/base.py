"""What every infrastructure service provides to the ``up``/``down``/``status`` commands."""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from infra.jdk import find_java17
from infra.layout import Layout


@dataclass
class Context:
    layout: Layout
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    _java: Path | None = None

    @property
    def java(self) -> Path:
        """The JDK 17 ``java``; looked up once, only when a JVM service needs it."""
        if self._java is None:
            self._java = find_java17(self.env)
        return self._java


class Service(ABC):
    name: str
    #: Every port the process listens on, by purpose; all are checked before start.
    ports: dict[str, int]
    #: The address it listens on.
    host: str = "127.0.0.1"
    #: Services of one group are started together, then waited for (a quorum forms only
    #: once enough of them run).
    group: str | None = None
    ready_timeout: float
    stop_grace: float

    @abstractmethod
    def install(self, ctx: Context) -> None:
        """Download or build what the process needs; a no-op when it is already there."""

    @abstractmethod
    def prepare(self, ctx: Context) -> None:
        """Render configs and initialise storage before the first start."""

    @abstractmethod
    def command(self, ctx: Context) -> list[str]:
        """The command line that runs the service in the foreground."""

    def environment(self, ctx: Context) -> dict[str, str]:
        return {}

    @abstractmethod
    def probe(self) -> bool:
        """True when a real client gets an answer from the service."""

    def wipe(self, ctx: Context) -> None:
        """Remove what the service stored (for ``./dev reset``); downloads stay."""
        for path in (ctx.layout.data(self.name), ctx.layout.logs(self.name)):
            shutil.rmtree(path, ignore_errors=True)

    def role(self) -> str:
        """What the node is in its cluster now (a Redis primary or replica), for status."""
        return ""

    @abstractmethod
    def endpoints(self) -> list[str]:
        """Where clients connect, one line each, for the summary table."""
