from pathlib import Path

import pytest

from infra.errors import MissingTool
from infra.jdk import find_java17, major_version


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('openjdk version "21.0.5" 2024-10-15 LTS', 21),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "25" 2025-09-16', 25),
        ("no version here", None),
    ],
)
def test_major_version(output: str, major: int | None) -> None:
    assert major_version(output) == major


def test_no_jdk_17_is_a_clear_error_saying_where_it_looked(tmp_path: Path) -> None:
    fake_home = tmp_path / "jdk-21"
    (fake_home / "bin").mkdir(parents=True)
    java = fake_home / "bin" / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"21.0.5\" 2024-10-15' >&2\n")
    java.chmod(0o755)
    with pytest.raises(MissingTool, match=r"no JDK 17 found.*jdk-21/bin/java \(major 21\)"):
        find_java17({"JAVA_HOME": str(fake_home)}, search_system=False)
