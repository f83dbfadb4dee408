"""An operator changes live config on the cluster from the shell: ``./dev admin`` logs in to
the replicated Redis (behind Sentinel, with a password) as the operator, reads and audits
sections, and a change that fails validation is refused with its reason and changes nothing."""

from __future__ import annotations

import json
import subprocess

from infra.layout import Layout

PROJECT = Layout.from_env().project


def _admin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["./dev", "admin", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_admin_command_reads_and_refuses_on_the_cluster() -> None:
    before = _admin("get", "limits")
    assert before.returncode == 0, before.stderr
    section = json.loads(before.stdout)
    assert section["section"] == "limits"

    refused = _admin("set", "limits", "max_body_bytes=-5")
    assert refused.returncode == 1
    assert "max_body_bytes" in refused.stderr, refused.stderr

    # Nothing was written: the audit trail's newest entry is still the version read before.
    trail = _admin("history", "limits", "--limit", "1")
    assert trail.returncode == 0, trail.stderr
    assert json.loads(trail.stdout)["entries"][0]["version"] == section["version"]


def test_the_admin_command_names_what_it_wants() -> None:
    bare = _admin()
    assert bare.returncode == 2
    assert "get, set, history or seed" in bare.stdout + bare.stderr
