"""Regenerate the code for protos/chat/v1/*.proto (``python -m protos.generate``): the Python
package ``protos.chat.v1`` and the Go package the compiled load generator uses
(``bench/loadgen/chatv1``).

With ``--check``, fail if the committed code differs from what the .proto files generate.
Run from anywhere: paths are resolved from this file, and imports in the generated code come out
as ``protos.chat.v1...`` because the include root is the project root. The Go plugins
(``protoc-gen-go``, ``protoc-gen-go-grpc``) are pinned and installed by ``./dev`` into
``.infra/bin``.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "protos" / "chat" / "v1"
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")
GO_MODULE = "chatbench"
GO_PACKAGE = ROOT / "bench" / "loadgen" / "chatv1"
GO_GENERATED = (".pb.go", "_grpc.pb.go")


def generate(out: Path) -> None:
    # protoc finds its mypy plugins (from mypy-protobuf) beside this interpreter, and the Go
    # plugins in .infra/bin.
    plugins = [Path(sys.executable).parent, ROOT / ".infra" / "bin"]
    os.environ["PATH"] = os.pathsep.join([*map(str, plugins), os.environ.get("PATH", "")])
    protos = sorted(str(path.relative_to(ROOT)) for path in PACKAGE.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    # The .proto files name no Go package (they belong to every language alike); the mapping
    # is given here instead.
    go_package = f"{GO_MODULE}/{GO_PACKAGE.name}"
    go_map = ",".join(f"M{proto}={go_package}" for proto in protos)
    (out / "go").mkdir()
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--go_out={out / 'go'}",
        f"--go_opt=module={GO_MODULE},{go_map}",
        f"--go-grpc_out={out / 'go'}",
        f"--go-grpc_opt=module={GO_MODULE},{go_map}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (the Go plugins come from ./dev up: .infra/bin)")


def _sync(fresh: Path, target: Path, suffixes: tuple[str, ...], *, check: bool) -> list[str]:
    """Compare (or, without ``check``, copy) the generated files; returns the stale names."""
    names = sorted(p.name for p in fresh.iterdir() if p.name.endswith(suffixes))
    stale = [
        name
        for name in names
        if not (target / name).is_file() or not filecmp.cmp(fresh / name, target / name)
    ]
    extra = [p.name for p in target.iterdir() if p.name.endswith(suffixes) and p.name not in names]
    if not check:
        for name in names:
            shutil.copyfile(fresh / name, target / name)
        for name in extra:
            (target / name).unlink()
    return stale + extra


def main(argv: list[str]) -> int:
    check = "--check" in argv
    GO_PACKAGE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        stale = _sync(out / "protos" / "chat" / "v1", PACKAGE, GENERATED, check=check)
        stale += _sync(out / "go" / GO_PACKAGE.name, GO_PACKAGE, GO_GENERATED, check=check)
        if check:
            if stale:
                print(f"generated protos are stale: {', '.join(stale)}; run ./dev protos")
                return 1
            print("generated protos are up to date")
            return 0
        print(f"wrote {PACKAGE.relative_to(ROOT)} and {GO_PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
