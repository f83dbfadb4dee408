"""What the two JVM services (Kafka, Cassandra) share: jars from Maven, JDK 17, base flags."""

from __future__ import annotations

from pathlib import Path

from infra import install
from infra.console import detail
from infra.services.base import Context, Service


class JvmService(Service):
    """A service run from ``infra/<name>/pom.xml``'s runtime jars on JDK 17."""

    #: Environment variable that overrides the heap size, and its default.
    heap_env: str
    default_heap: str
    #: Whose jars it runs (``infra/<package>/pom.xml``, ``.infra/<package>/lib``): the nodes of
    #: a cluster share one copy.
    package: str

    def install(self, ctx: Context) -> None:
        detail(f"using {ctx.java}")
        install.maven_libs(ctx.layout, self.package, ctx.java)

    def lib(self, ctx: Context) -> Path:
        return ctx.layout.home(self.package) / "lib"

    def classpath(self, ctx: Context) -> str:
        # A wildcard entry: the JVM expands it to every jar in the folder.
        return f"{self.lib(ctx)}/*"

    def base_command(self, ctx: Context) -> list[str]:
        """``java`` with a fixed heap (never the JVM's share-of-RAM default) and crash files
        kept beside the service's log."""
        heap = ctx.env.get(self.heap_env, self.default_heap)
        return [
            str(ctx.java),
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+ExitOnOutOfMemoryError",
            # Two cores run everything here: one GC worker each, so a collection never takes
            # both cores from the services.
            "-XX:ParallelGCThreads=1",
            "-XX:ConcGCThreads=1",
            f"-XX:ErrorFile={ctx.layout.logs(self.name)}/hs_err_pid%p.log",
        ]


def options_file(path: Path) -> list[str]:
    """JVM flags from a checked-in file: one per line, ``#`` starts a comment line."""
    flags: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            flags.append(stripped)
    return flags
