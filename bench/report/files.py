"""The attachments' section: files through the object store."""

from __future__ import annotations

from pathlib import Path

from bench.report.common import load


def transfers(results: Path) -> list[str]:
    """(l) Files uploaded and downloaded through presigned URLs."""
    found = load(results, "files")
    if not found:
        return []
    run = found["result"]
    lines = [
        f"## (l) {run['files']} files of {run['bytes_each'] / 2**20:g} MiB through the object store",
        "",
        f"Command: `{found['command']}` ({found['measured_at']}). One client, {run['parallel']} "
        "files at a time. Upload: `POST .../attachments` (the BFF, then messaging presigns), the "
        "bytes PUT straight to SeaweedFS, then a message naming the file. Download, as the other "
        "member: the link (`GET .../attachments/{id}`), then the bytes from SeaweedFS, compared "
        "with what was sent. CPU seconds over each phase.",
        "",
        "| phase | wall s | MiB/s | per file p50 ms | p99 ms | SeaweedFS CPU s | our services "
        "CPU s | Cassandra, Kafka, Redis, Jaeger CPU s | the client's CPU s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, phase in run["phases"].items():
        per = phase["per_file_ms"]
        lines.append(
            f"| {name} | {phase['wall_s']} | {phase['mib_per_s']} | {per['p50']} | {per['p99']} | "
            f"{phase['store_cpu_s']} | {phase['our_services_cpu_s']} | "
            f"{phase.get('backing_cpu_s', '-')} | {phase['client_cpu_s']} |"
        )
    lines.append("")
    return lines
