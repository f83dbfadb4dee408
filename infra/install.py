"""Installing what the local stack needs: jars from Maven Central, Jaeger and SeaweedFS from
the Go module proxy, Redis from Debian's packages. Each install is skipped when its result is
already there."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.commands import Progress, run_logged
from infra.console import detail
from infra.errors import InfraError, MissingTool
from infra.layout import Layout

# Pinned plugin: an unpinned ``dependency:copy-dependencies`` lets Maven pick the newest plugin,
# which may need a newer Maven than the machine has.
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
MAVEN_DOWNLOADS = Progress(re.compile(r"^Downloaded from "), "files downloaded")

# Jaeger v2 is published from a module path without /v2, so its v2.x.y tags are not valid Go
# versions. Every v2 release is dual-tagged v1.(x+63).y; v1.76.0 is the v2.13.0 release (commit
# 63b27e18). The module sum pins the exact source, as a commit hash would.
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
JAEGER_VERSION = "v1.76.0"
JAEGER_RELEASE = "v2.13.0"
JAEGER_SUM = "h1:sWCOOF1dr+NL0PLil7mFo3BqqQL8k4WiM7aguFbc14g="
GO_COMPILED = Progress(re.compile(r"^[\w.\-]+(/[\w.\-~]+)*$"), "Go packages compiled")


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def require_program(name: str, hint: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise MissingTool(f"{name} is not on PATH: {hint}")
    return found


def maven_libs(layout: Layout, name: str, java: Path) -> Path:
    """Copy the runtime jars of ``infra/<name>/pom.xml`` into ``.infra/<name>/lib``.

    Maven downloads into ``~/.m2`` (its own cache); the copy is redone only when the POM changes.
    """
    pom = layout.sources / name / "pom.xml"
    lib = layout.home(name) / "lib"
    stamp = lib / ".pom-sha256"
    wanted = file_digest(pom)
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        detail(f"cached: {sum(1 for _ in lib.glob('*.jar'))} jars in {lib}")
        return lib
    mvn = require_program("mvn", "install Maven 3.8+ (Debian package maven)")
    staging = lib.with_name("lib.partial")
    shutil.rmtree(staging, ignore_errors=True)
    run_logged(
        [
            mvn,
            "-B",
            "-f",
            str(pom),
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        log=layout.build_log(f"{name}-maven"),
        what=f"downloading the {name} jars with Maven",
        progress=MAVEN_DOWNLOADS,
        env={"JAVA_HOME": str(java.parent.parent)},
    )
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    stamp.write_text(wanted + "\n")
    jars = list(lib.glob("*.jar"))
    size = sum(jar.stat().st_size for jar in jars) / 2**20
    detail(f"{len(jars)} jars, {size:.0f} MiB in {lib}")
    return lib


@dataclass(frozen=True)
class GoModule:
    """A program built from a Go module's pinned source (its sum) with its own go.mod."""

    name: str
    module: str
    version: str
    sum: str
    #: The package to build, relative to the module's root.
    package: str
    #: What ``./dev`` says while it compiles.
    note: str


JAEGER = GoModule(
    "jaeger",
    JAEGER_MODULE,
    JAEGER_VERSION,
    JAEGER_SUM,
    "./cmd/jaeger",
    "compiling Jaeger (several minutes on 2 cores the first time; Go caches the rest)",
)
# SeaweedFS (Apache-2.0) publishes no Go-valid release tags: this pseudo-version is the
# commit of 2026-11-09 the module proxy serves; the sum pins its source.
SEAWEEDFS = GoModule(
    "weed",
    "github.com/seaweedfs/seaweedfs",
    "v0.0.0-20261109003541-7506e5f91cd6",
    "h1:LOYZFToHq9F7pSR6lkPGfkM8RmHlVFrzndKdhmNZjrU=",
    "./weed",
    "compiling SeaweedFS (about five minutes on 2 cores the first time; Go caches the rest)",
)


def jaeger_binary(layout: Layout) -> Path:
    """Build Jaeger v2 from the Go module proxy once per user, then link it into ``.infra/bin``.

    ``go install module@version`` refuses this module (its go.mod has a replace directive), so
    the module source is downloaded, checked against the pinned sum, and built in place with its
    own go.mod and go.sum.
    """
    return go_binary(layout, JAEGER)


def go_binary(layout: Layout, program: GoModule) -> Path:
    """``program`` built once per user (in the cache), linked into ``.infra/bin``."""
    target = layout.bin / program.name
    cached = layout.cache / program.name / program.version / program.name
    if not cached.is_file():
        _build_go_module(layout, program, cached)
    else:
        detail(f"cached build: {cached}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or not target.samefile(cached):
        target.unlink(missing_ok=True)
        try:
            os.link(cached, target)
        except OSError:
            shutil.copy2(cached, target)
    return target


def _build_go_module(layout: Layout, program: GoModule, output: Path) -> None:
    go = require_program("go", "install Go 1.24 or newer")
    log = layout.build_log(f"{program.name}-download")
    where = f"{program.module}@{program.version}"
    run_logged(
        [go, "mod", "download", "-json", where],
        log=log,
        what=f"downloading {where} from the Go module proxy",
        cwd=layout.state,
    )
    info = _download_info(log)
    if info.get("Sum") != program.sum:
        raise InfraError(f"{where} has sum {info.get('Sum')}, expected {program.sum}")
    source = output.parent / "src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(info["Dir"], source)
    for path in [source, *source.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    partial = output.with_name(f"{program.name}.partial")
    detail(program.note)
    run_logged(
        [go, "build", "-v", "-trimpath", "-o", str(partial), program.package],
        log=layout.build_log(f"{program.name}-build"),
        what=f"building {program.name} with go build",
        progress=GO_COMPILED,
        cwd=source,
        env={"CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"},
    )
    partial.rename(output)
    shutil.rmtree(source, ignore_errors=True)
    detail(f"built {output} ({output.stat().st_size / 2**20:.0f} MiB)")


def _download_info(log: Path) -> dict[str, str]:
    text = log.read_text()
    start = text.find("{")
    if start < 0:
        raise InfraError(f"go mod download printed no module description; see {log}")
    decoded = json.loads(text[start:])
    if not isinstance(decoded, dict) or "Dir" not in decoded:
        raise InfraError(f"go mod download did not report a module folder; see {log}")
    return {str(key): str(value) for key, value in decoded.items()}


def redis_server(layout: Layout) -> Path:
    """``redis-server`` from PATH, installing Debian's package when it is missing."""
    return debian_program(layout, "redis-server", "redis-server", "redis-server (7.x)")


def prometheus(layout: Layout) -> Path:
    """``prometheus`` (and ``promtool`` beside it) from Debian's package when missing."""
    return debian_program(layout, "prometheus", "prometheus", "prometheus (2.x)")


def chromium(layout: Layout) -> tuple[Path, Path]:
    """Headless Chromium and its WebDriver, for the web client's browser tests; and NSS's
    certutil, with which the cluster's browser test trusts the cluster's CA."""
    browser = debian_program(layout, "chromium", "chromium", "chromium")
    driver = debian_program(layout, "chromedriver", "chromium-driver", "chromium-driver")
    debian_program(layout, "certutil", "libnss3-tools", "NSS tools (certutil)")
    # Without a colour emoji font, headless Chromium draws every emoji as an empty box, and
    # the web client's screenshots show reactions that nobody can read.
    if not EMOJI_FONT.is_file():
        _apt_install(layout, "fonts-noto-color-emoji", "an emoji font (fonts-noto-color-emoji)")
        if not EMOJI_FONT.is_file():
            raise MissingTool(
                f"apt-get installed fonts-noto-color-emoji but {EMOJI_FONT} is absent"
            )
    detail(f"found {EMOJI_FONT}")
    return browser, driver


#: Debian's colour emoji font (fonts-noto-color-emoji), which Chromium finds by fontconfig.
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")


def debian_program(layout: Layout, program: str, package: str, what: str) -> Path:
    """``program`` from PATH, installing Debian's ``package`` when it is missing."""
    found = shutil.which(program)
    if found is not None:
        detail(f"found {found}")
        return Path(found)
    _apt_install(layout, package, what)
    found = shutil.which(program)
    if found is None:
        raise MissingTool(f"apt-get installed {package} but {program} is not on PATH")
    return Path(found)


def _apt_install(layout: Layout, package: str, what: str) -> None:
    """Debian's ``package``, with apt-get (as root, or through sudo)."""
    apt = require_program("apt-get", f"install {what} by hand on this system")
    sudo: list[str] = []
    if os.geteuid() != 0:
        sudo = [require_program("sudo", f"run as root or install {what} by hand")]
    # A package's maintainer script would start a system-wide daemon on the port infra wants
    # for its own. A policy-rc.d that answers 101 ("action forbidden") prevents that.
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = False
    if not policy.exists() and os.geteuid() == 0:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created_policy = True
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        run_logged(
            [*sudo, apt, "update"],
            log=layout.build_log("apt-update"),
            what="apt-get update",
            env=env,
        )
        run_logged(
            [*sudo, apt, "install", "-y", "--no-install-recommends", package],
            log=layout.build_log(f"{package}-apt"),
            what=f"installing {package} with apt-get",
            progress=Progress(re.compile(r"^(Get:|Setting up)"), "package steps"),
            env=env,
        )
    finally:
        if created_policy:
            policy.unlink(missing_ok=True)


def redis_version(binary: Path) -> str:
    result = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False, timeout=10
    )
    return result.stdout.strip()
