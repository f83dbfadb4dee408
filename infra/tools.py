"""The project's compiled tools, built from the Go module proxy into ``.infra/bin``.

* ``protoc-gen-go`` and ``protoc-gen-go-grpc`` (pinned): ``./dev protos`` and ``./dev check``
  generate the Go code of the protos with them.
* ``loadgen`` and ``peer`` from ``bench/loadgen``: the benchmarks' load generator (compiled, so it
  stays a small share of the machine it shares with the system under test) and the
  centrifuge-based peer server it is compared with.

Go's module and build caches make a rebuild with nothing changed take a second or two.
"""

from __future__ import annotations

import os
from pathlib import Path

from infra.commands import run_logged
from infra.console import detail
from infra.install import GO_COMPILED, require_program
from infra.layout import Layout

PLUGINS = {
    "protoc-gen-go": "google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12",
    "protoc-gen-go-grpc": "google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2",
}
COMMANDS = ("loadgen", "peer")


def protoc_plugins(layout: Layout) -> None:
    """Install the pinned Go protoc plugins into ``.infra/bin`` unless they are there."""
    stamp = layout.bin / ".protoc-plugins"
    wanted = "\n".join(PLUGINS.values())
    if stamp.is_file() and stamp.read_text() == wanted and _all(layout, PLUGINS):
        detail(f"cached: {', '.join(PLUGINS)}")
        return
    go = require_program("go", "install Go 1.26 or newer")
    layout.bin.mkdir(parents=True, exist_ok=True)
    for name, module in PLUGINS.items():
        run_logged(
            [go, "install", module],
            log=layout.build_log(name),
            what=f"installing {module}",
            env={"GOBIN": str(layout.bin), "GOFLAGS": "-buildvcs=false"},
        )
    stamp.write_text(wanted)
    detail(f"installed {', '.join(PLUGINS)} into {layout.bin}")


def bench_binaries(layout: Layout) -> None:
    """Build the load generator and the peer server from ``bench/loadgen``."""
    go = require_program("go", "install Go 1.26 or newer")
    source = layout.project / "bench" / "loadgen"
    layout.bin.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        run_logged(
            [go, "build", "-v", "-trimpath", "-o", str(layout.bin / name), f"./cmd/{name}"],
            log=layout.build_log(f"go-{name}"),
            what=f"building bench/loadgen/cmd/{name}",
            progress=GO_COMPILED,
            cwd=source,
            env={"CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"},
        )
    detail(f"built {', '.join(str(layout.bin / n) for n in COMMANDS)}")


def _all(layout: Layout, names: dict[str, str]) -> bool:
    return all(os.access(Path(layout.bin / name), os.X_OK) for name in names)
