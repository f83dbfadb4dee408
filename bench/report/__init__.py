"""Turning bench/results/*.json into tables, plots and docs/benchmarks.md: one module per group
of sections (``summary``, ``sending``, ``streams``, ``history``, ``groups``, ``files``,
``cluster``), put together here in the page's order."""

from __future__ import annotations

from pathlib import Path

from bench.report import cluster, files, groups, history, sending, streams, summary
from bench.report.common import downsample, sustained

__all__ = ["downsample", "sustained", "write"]

#: The page, top to bottom.
SECTIONS = (
    summary.header,
    sending.end_to_end,
    sending.stepped,
    sending.peer,
    streams.idle,
    history.pages,
    history.search,
    streams.moves,
    streams.revocation,
    streams.browsers,
    groups.large_group,
    sending.receipts,
    history.writer_restarts,
    files.transfers,
    cluster.cost,
    cluster.servers,
    cluster.tls,
    cluster.partitions,
    cluster.faults,
    sending.before,
)


def write(results: Path, docs: Path) -> None:
    lines: list[str] = []
    for section in SECTIONS:
        lines += section(results)
    extra = docs.with_name("benchmarks-notes.md")
    if extra.is_file():
        lines += [extra.read_text().strip(), ""]
    docs.write_text("\n".join(lines))
    (results / "summary.md").write_text("\n".join(lines).replace("../bench/results/", ""))
    print(f"wrote {docs} and {results / 'summary.md'}")
