"""Where infra keeps things.

Everything a run produces (jars, binaries, data, logs, pid files) lives under ``.infra/`` in the
project, which git ignores. Downloads and builds that are expensive to repeat are also cached per
user (Maven's ``~/.m2``, Go's module and build caches, pip's cache, and the Jaeger binary under
``~/.cache/chat-backend``), so a fresh clone on a machine that has run once before starts fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Layout:
    project: Path
    state: Path
    cache: Path

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Layout:
        env = dict(os.environ if env is None else env)
        project = Path(env.get("CHAT_PROJECT_ROOT", PROJECT_ROOT))
        state = Path(env.get("CHAT_INFRA_STATE", project / ".infra"))
        xdg = Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        cache = Path(env.get("CHAT_CACHE_DIR", xdg / "chat-backend"))
        return cls(project=project, state=state.resolve(), cache=cache.resolve())

    @property
    def sources(self) -> Path:
        """The checked-in infra files (POMs, config templates)."""
        return self.project / "infra"

    @property
    def bin(self) -> Path:
        return self.state / "bin"

    def home(self, service: str) -> Path:
        return self.state / service

    def data(self, service: str) -> Path:
        return self.home(service) / "data"

    def logs(self, service: str) -> Path:
        return self.home(service) / "logs"

    def log(self, service: str) -> Path:
        return self.logs(service) / f"{service}.log"

    def pidfile(self, service: str) -> Path:
        return self.home(service) / "pid.json"

    def build_log(self, name: str) -> Path:
        return self.state / "build-logs" / f"{name}.log"
