"""Regenerate the Python code for protos/chat/v1/*.proto (``python -m protos.generate``).

With ``--check``, fail if the committed code differs from what the .proto files generate.
Run from anywhere: paths are resolved from this file, and imports in the generated code come out
as ``protos.chat.v1...`` because the include root is the project root.
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


def generate(out: Path) -> None:
    # protoc finds its mypy plugins (from mypy-protobuf) on PATH, beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    protos = sorted(str(path.relative_to(ROOT)) for path in PACKAGE.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh = out / "protos" / "chat" / "v1"
        names = sorted(p.name for p in fresh.iterdir() if p.name.endswith(GENERATED))
        stale = [
            name
            for name in names
            if not (PACKAGE / name).is_file() or not filecmp.cmp(fresh / name, PACKAGE / name)
        ]
        extra = [
            p.name for p in PACKAGE.iterdir() if p.name.endswith(GENERATED) and p.name not in names
        ]
        if check:
            if stale or extra:
                print(f"generated protos are stale: {', '.join(stale + extra)}; run ./dev protos")
                return 1
            print(f"generated protos are up to date ({len(names)} files)")
            return 0
        for name in names:
            shutil.copyfile(fresh / name, PACKAGE / name)
        for name in extra:
            (PACKAGE / name).unlink()
        print(f"wrote {len(names)} files to {PACKAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
