"""Finding a JDK 17: Kafka 4.x needs 17 or newer, and Cassandra 5.0 runs on 11 or 17 only."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from infra.errors import MissingTool

_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def major_version(version_output: str) -> int | None:
    """Parse ``java -version`` output (``openjdk version "17.0.15"`` or ``"1.8.0_392"``)."""
    match = _VERSION.search(version_output)
    if match is None:
        return None
    first = int(match.group(1))
    if first == 1 and match.group(2) is not None:
        return int(match.group(2))
    return first


def _java_major(java: Path) -> int | None:
    try:
        result = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return major_version(result.stderr + result.stdout)


def candidate_homes(env: dict[str, str], *, search_system: bool = True) -> list[Path]:
    homes = [Path(env[key]) for key in ("CHAT_JAVA17_HOME", "JAVA_HOME") if env.get(key)]
    jvm = Path("/usr/lib/jvm")
    if search_system and jvm.is_dir():
        homes.extend(sorted(path for path in jvm.iterdir() if "17" in path.name))
    return homes


def find_java17(env: dict[str, str] | None = None, *, search_system: bool = True) -> Path:
    """The ``java`` binary of a JDK 17, or MissingTool saying where it looked."""
    env = dict(os.environ if env is None else env)
    tried: list[str] = []
    for home in candidate_homes(env, search_system=search_system):
        java = home / "bin" / "java"
        if not java.is_file():
            continue
        major = _java_major(java)
        tried.append(f"{java} (major {major})")
        if major == 17:
            return java
    raise MissingTool(
        "no JDK 17 found (Cassandra 5.0 needs exactly 17, Kafka 4.x 17+). "
        "Install openjdk-17-jdk-headless or set CHAT_JAVA17_HOME. Tried: "
        + (", ".join(tried) or "nothing under $CHAT_JAVA17_HOME, $JAVA_HOME or /usr/lib/jvm")
    )
