"""``python -m bench <scenario>``: run against the stack ``./dev up`` started.

Each scenario writes ``<name>.json`` into ``.infra/bench-results/`` (``CHAT_BENCH_RESULTS``),
which git ignores, so running a benchmark never changes a tracked file. ``keep NAME...``
copies chosen results into ``bench/results/``, the figures the docs cite, and ``report`` turns
those into bench/results/summary.md, PNG plots and docs/benchmarks.md. A scenario that needs
looser limits than the live config's sets them through the config service and puts them back.

Scenarios:

  e2e      N users hold streams, M send at a fixed total rate; CPU per message; the raw
           Kafka floor at the same rate right after
  peer     the same load against the centrifuge-based peer server (bench/loadgen/cmd/peer)
  step     the e2e rate stepped up until p99 passes 100 ms or anything is lost
  floors   raw Kafka produce-to-consume and raw Cassandra inserts at the same rate
  idle     idle streams on one messaging server: resident memory per stream
  history  50-message history pages at rising rates
  search   searches in a chat of 100,000 messages (in one bucket, and over 300 days)
  files    100 files of 1 MiB uploaded to the object store and downloaded again: time, and
           our processes' CPU against the store's
  moves    half the partitions move to the other server and back under held streams
  revocation  streams held, then their sessions logged out: when each stream ended
  ws-idle  idle WebSockets on the BFF: resident memory per connection
  ws-e2e   messages sent over WebSockets, latency to the recipients' WebSocket and gRPC stream
  writer-restart  the history writer SIGKILLed and restarted under load: how long until it
           writes again
  tls      the CPU TLS adds to a gRPC call and to a streamed event (one process, loopback)
  partitions  the cluster grown to more partitions in steps: idle CPU and memory at each,
           how long sends were held, how long a messaging server's restart takes (moves)
  keep     copy results from .infra/bench-results into bench/results (what the docs cite)
  report   tables, plots and docs/benchmarks.md from bench/results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench import (
    cpu,
    e2e,
    files,
    floors,
    group,
    history_load,
    idle,
    limits,
    moves,
    partitions,
    presence,
    report,
    revocation,
    search,
    stats,
    tls_cost,
    writer_restart,
    ws,
)
from bench.population import created_members, open_chats, register_and_login
from bench.reach import HERE
from chatlib import live_config, redis_client
from chatlib.partitioning import Partitioning
from chatlib.settings import Common, Env
from infra import processes
from infra.layout import Layout

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
RUNS = Path(
    os.environ.get("CHAT_BENCH_RESULTS")
    or Path(__file__).resolve().parent.parent / ".infra" / "bench-results"
)
BFF = HERE.bff
#: How to reach the infrastructure: what the services read (``CHAT_*``; the token key is not
#: needed for it).
INFRA = Common(Env({"CHAT_JWT_SECRET": "-", **os.environ}))
CONFIG = HERE.config
#: History's query service on the single-node stack (``./dev up``).
HISTORY = os.environ.get("CHAT_HISTORY_ADDRESS", "127.0.0.1:7201")
#: Messages the history scenario pages through.
HISTORY_SEED = 120


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


async def _partitioning() -> Partitioning:
    """The partitioning section in force (the live config in Redis)."""
    client = redis_client.connect(INFRA.redis)
    document = await live_config.read(client, "partitioning")
    await client.aclose()
    if document is None:
        raise SystemExit("no partitioning config in Redis; ./dev up first")
    return Partitioning.parse(document.value)


def save(name: str, command: str, result: dict[str, Any]) -> Path:
    RUNS.mkdir(parents=True, exist_ok=True)
    path = RUNS / f"{name}.json"
    payload = {
        "scenario": name,
        "command": command,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "result": result,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {path}")
    return path


async def run_e2e(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    plan = await e2e.build_plan(
        BFF,
        args.users,
        args.senders,
        rate,
        args.duration,
        args.body,
        args.warmup,
        receipts=getattr(args, "receipts", False),
    )
    accounted = {**cpu.stack_pids(), "bench": os.getpid()}
    # Each sender sends rate / senders a second: the per-user limit must allow it (twice, for
    # the generator's bursts after a stall), whatever the live config says today.
    per_sender = rate / max(1, args.senders)
    async with limits.send_limits(CONFIG, rate_per_user=2 * per_sender, burst=1):
        result = await asyncio.to_thread(e2e.run, plan, accounted)
    sends = result.pop("_sends")
    deadline = time.monotonic() + 60
    while True:
        persisted = await e2e.check_persisted(BFF, plan, sends)
        if persisted["persisted_missing"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    result.update(persisted)
    result["timeline"] = report.downsample(result["timeline"], 4000)
    if args.floor:
        # Two floors: Kafka as our clients are set at full load, and Kafka as fast as it goes.
        window = min(args.duration, 15)
        floor = await floors.kafka_floor(INFRA.kafka, rate, window, args.body)
        result["kafka_floor_ms"] = floor["produce_to_consume_ms"]
        fastest = await floors.kafka_floor(INFRA.kafka, rate, window, args.body, floors.LATENCY)
        result["kafka_latency_floor_ms"] = fastest["produce_to_consume_ms"]
    return result


async def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """The e2e load against the peer server; its CPU is what the machine spent beyond the
    generator and the (idle) processes of our stack."""
    layout = Layout.from_env()
    address = "127.0.0.1:7190"
    server = await asyncio.create_subprocess_exec(
        str(layout.bin / "peer"), "-addr", address, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        await asyncio.sleep(1)
        plan = e2e.peer_plan(
            args.users, args.senders, args.rate, args.duration, args.body, address, args.warmup
        )
        stack = cpu.stack_pids(layout)
        accounted = {**stack, "peer": server.pid, "bench": os.getpid()}
        result = await asyncio.to_thread(e2e.run, plan, accounted)
    finally:
        server.terminate()
        await server.wait()
    result.pop("_sends")
    usage = result["cpu"]
    idle_stack = sum(usage["processes"].get(name, {}).get("cores", 0.0) for name in stack)
    peer_cores = usage["system_cores"] - idle_stack
    usage["peer_cores"] = round(peer_cores, 3)
    usage["peer_cpu_ms_per_msg"] = round(
        peer_cores * usage["window_s"] / usage["messages"] * 1000, 4
    )
    result["timeline"] = report.downsample(result["timeline"], 4000)
    return result


def summarize(result: dict[str, Any]) -> str:
    e2e_ms, ack, usage = result["e2e_ms"], result["send_ack_ms"], result["cpu"]
    shares = ", ".join(
        f"{name} {p['cores']}" for name, p in usage["processes"].items() if p["cores"] >= 0.01
    )
    return (
        f"rate {result['rate']:g}/s: acked {result['acked']}/{result['attempted']}, "
        f"e2e p50 {e2e_ms['p50']} p99 {e2e_ms['p99']} max {e2e_ms['max']} ms, "
        f"ack p50 {ack['p50']} p99 {ack['p99']} ms, lost {result['lost_deliveries']}, "
        f"dup {result['duplicate_deliveries']}, persisted missing "
        f"{result.get('persisted_missing', '-')}, errors {result['send_errors']}\n"
        f"  cpu: {usage['cpu_ms_per_msg']} ms/msg, system {usage['system_cores']} cores, "
        f"generator {usage['generator_cores']} ({usage['generator_share']} of the busy time); "
        f"{shares}"
    )


def lossless(result: dict[str, Any]) -> bool:
    return bool(
        result["acked"] == result["attempted"]
        and result["lost_deliveries"] == 0
        and result["duplicate_deliveries"] == 0
        and result.get("persisted_missing", 0) == 0
        and result.get("persisted_duplicates", 0) == 0
    )


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="chat-bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="scenario", required=True)
    for name in ("e2e", "step", "peer"):
        p = sub.add_parser(name)
        p.add_argument("--users", type=int, default=200)
        p.add_argument("--senders", type=int, default=100)
        p.add_argument("--rate", type=float, default=500)
        p.add_argument("--duration", type=float, default=60 if name == "e2e" else 20)
        p.add_argument("--body", type=int, default=100, help="message body bytes")
        p.add_argument(
            "--warmup",
            type=float,
            default=5.0,
            help="seconds sent first and left out of latency and CPU (still accounted)",
        )
        p.add_argument(
            "--no-floor",
            dest="floor",
            action="store_false",
            help="skip the raw Kafka floor measured after each rate",
        )
        if name == "e2e":
            p.add_argument(
                "--save-as",
                default="",
                help="the result's name (default e2e-RATE): e.g. cluster-e2e-500-3-servers",
            )
            p.add_argument(
                "--receipts",
                action="store_true",
                help="receipts and typing on: every stream marks what it gets delivered and"
                " read (once a second per chat), senders say they are typing (once per 3 s)",
            )
        if name == "step":
            p.add_argument("--step", type=float, default=500)
            p.add_argument("--max-rate", type=float, default=6000)
    f = sub.add_parser("floors")
    f.add_argument("--rate", type=float, default=500)
    f.add_argument("--duration", type=float, default=60)
    f.add_argument("--body", type=int, default=100)
    i = sub.add_parser("idle")
    i.add_argument("--streams", type=int, default=10_000)
    i.add_argument("--server", default="m1")
    h = sub.add_parser("history")
    h.add_argument("--rates", default="100,250,500")
    h.add_argument("--duration", type=float, default=10)
    fi = sub.add_parser("files")
    fi.add_argument("--count", type=int, default=100)
    fi.add_argument("--size", type=int, default=2**20)
    fi.add_argument("--parallel", type=int, default=4)
    se = sub.add_parser("search")
    se.add_argument("--messages", type=int, default=100_000)
    se.add_argument("--rounds", type=int, default=50)
    se.add_argument("--limit", type=int, default=50)
    m = sub.add_parser("moves")
    m.add_argument("--streams", type=int, default=2000)
    m.add_argument("--rounds", type=int, default=2)
    w = sub.add_parser("ws-idle")
    w.add_argument("--connections", type=int, default=10_000)
    we = sub.add_parser("ws-e2e")
    we.add_argument("--rate", type=float, default=200)
    we.add_argument("--duration", type=float, default=30)
    we.add_argument("--users", type=int, default=200)
    r = sub.add_parser("revocation")
    r.add_argument("--users", type=int, default=200)
    r.add_argument("--parallel", type=int, default=4, help="logouts in flight at once")
    g = sub.add_parser("group")
    g.add_argument("--members", type=int, default=1000)
    g.add_argument("--messages", type=int, default=60)
    g.add_argument("--rate", type=float, default=2.0, help="messages per second")
    g.add_argument("--online", type=float, default=1.0, help="share of members streaming")
    pd = sub.add_parser("presence-death")
    pd.add_argument("--rounds", type=int, default=3)
    wr = sub.add_parser("writer-restart")
    wr.add_argument("--rounds", type=int, default=3)
    wr.add_argument("--rate", type=float, default=50, help="messages per second meanwhile")
    wr.add_argument(
        "--dynamic",
        action="store_true",
        help="restart the writer without its static group member id (for comparison)",
    )
    tc = sub.add_parser("tls")
    tc.add_argument("--rounds", type=int, default=5)
    tc.add_argument("--calls", type=int, default=3000)
    tc.add_argument("--events", type=int, default=30000)
    pt = sub.add_parser("partitions")
    pt.add_argument("--counts", default="12,96,384", help="partition counts, rising")
    pt.add_argument("--idle-seconds", type=float, default=60.0)
    k = sub.add_parser("keep", help="copy results into bench/results, which the docs cite")
    k.add_argument("names", nargs="+", help="result names, e.g. e2e-500 history")
    rp = sub.add_parser("report")
    rp.add_argument("--results", type=Path, default=RESULTS)
    rp.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    command = "python -m bench " + " ".join(argv)

    if args.scenario == "peer":
        result = await run_peer(args)
        print(summarize(result))
        print(f"  peer: {result['cpu']['peer_cpu_ms_per_msg']} ms/msg")
        save(f"peer-{args.rate:g}", command, result)
    elif args.scenario == "e2e":
        if args.save_as and not re.fullmatch(r"[\w.-]{1,80}", args.save_as):
            raise SystemExit(f"--save-as {args.save_as!r}: letters, digits, '.', '_', '-' only")
        result = await run_e2e(args, args.rate)
        print(summarize(result))
        if args.receipts:
            print(f"  marks sent {result['marks_sent']}, typing calls {result['typing_sent']}")
        default = f"e2e-{args.rate:g}{'-receipts' if args.receipts else ''}"
        save(args.save_as or default, command, result)
    elif args.scenario == "step":
        steps = []
        rate = args.rate
        while rate <= args.max_rate:
            result = await run_e2e(args, rate)
            print(summarize(result))
            steps.append(result)
            if result["e2e_ms"]["p99"] > 100 or not lossless(result):
                break
            rate += args.step
        sustained = [s["rate"] for s in steps if s["e2e_ms"]["p99"] <= 100 and lossless(s)]
        save("step", command, {"steps": steps, "max_sustained_rate": max(sustained, default=0)})
    elif args.scenario == "ws-idle":
        layout = Layout.from_env()
        secret = (layout.state / "secrets" / "jwt").read_text().strip()
        tracked = processes.alive(layout.pidfile("bff"))
        if tracked is None:
            raise SystemExit("the BFF is not running; ./dev up first")
        servers = {
            name: found.pid
            for name in ("messaging-m1", "messaging-m2")
            if (found := processes.alive(layout.pidfile(name))) is not None
        }
        result = await ws.idle_websockets(BFF, secret, tracked.pid, args.connections, servers)
        print(result)
        save("ws-idle", command, result)
    elif args.scenario == "ws-e2e":
        result = await ws.ws_e2e(BFF, args.rate, args.duration, args.users)
        print(result)
        save(f"ws-e2e-{args.rate:g}", command, result)
    elif args.scenario == "group":
        if not 0 < args.online <= 1:
            raise SystemExit("--online is the share of members with a live stream, in (0, 1]")
        secret = (Layout.from_env().state / "secrets" / "jwt").read_text().strip()
        config = await _partitioning()
        users = await created_members(HISTORY, secret, config, args.members, "grp")
        online = max(1, round(args.members * args.online))
        async with limits.group_size(CONFIG, args.members):
            result = await group.group_messages(users, online, args.messages, args.rate)
        print({k: v for k, v in result.items() if k != "cpu"}, result["cpu"]["cpu_ms_per_msg"])
        save(f"group{args.members}", command, result)
    elif args.scenario == "presence-death":
        result = await presence.server_death(BFF, args.rounds)
        print(result)
        save("presence-death", command, result)
    elif args.scenario == "revocation":
        result = await revocation.revocation(BFF, args.users, args.parallel)
        print(result)
        save("revocation", command, result)
    elif args.scenario == "floors":
        kafka = await floors.kafka_floor(INFRA.kafka, args.rate, args.duration, args.body)
        print(f"kafka produce-to-consume: {kafka['produce_to_consume_ms']}")
        cass = await floors.cassandra_floor(INFRA.cassandra, args.rate, args.duration, args.body)
        print(f"cassandra insert: {cass['insert_ms']}")
        save(f"floors-{args.rate:g}", command, {"kafka": kafka, "cassandra": cass})
    elif args.scenario == "idle":
        layout = Layout.from_env()
        secret = (layout.state / "secrets" / "jwt").read_text().strip()
        tracked = processes.alive(layout.pidfile(f"messaging-{args.server}"))
        if tracked is None:
            raise SystemExit(f"messaging-{args.server} is not running; ./dev up first")
        config = await _partitioning()
        result = await idle.idle_streams(secret, config, args.server, tracked.pid, args.streams)
        print(result)
        save("idle", command, result)
    elif args.scenario == "history":
        [alice, bob] = await register_and_login(BFF, 2, "hist")
        [chat_id] = await open_chats(BFF, [(alice, bob)])
        # 120 messages at once: more than one user's default burst of sends allows.
        async with (
            limits.send_limits(CONFIG, rate_per_user=1, burst=HISTORY_SEED),
            HERE.http() as http,
        ):
            for n in range(HISTORY_SEED):
                async with http.post(
                    f"{BFF}/v1/chats/{chat_id}/messages",
                    json={"client_message_id": f"h{n}", "body": f"history message {n} " + "x" * 80},
                    headers={"Authorization": f"Bearer {alice.token}"},
                ) as response:
                    if response.status != 201:
                        raise RuntimeError(f"seeding history: {await response.text()}")
        await asyncio.sleep(3)  # the history writer persists asynchronously
        levels = []
        accounted = {**cpu.stack_pids(), "bench": os.getpid()}
        for rate in (float(r) for r in args.rates.split(",")):
            level = await asyncio.to_thread(
                history_load.pages,
                "127.0.0.1:7201",
                bob.token,
                chat_id,
                rate,
                args.duration,
                accounted,
            )
            query = level["cpu"]["processes"].get("history-query", {})
            print(
                f"{rate:g} pages/s: {level['page_ms']} errors {level['errors']}; history-query "
                f"{query.get('cores')} cores, {query.get('cpu_ms_per_msg')} ms per page"
            )
            levels.append(level)
        save("history", command, {"levels": levels})
    elif args.scenario == "files":
        [alice, bob] = await register_and_login(BFF, 2, "files")
        [chat_id] = await open_chats(BFF, [(alice, bob)])
        async with limits.send_limits(CONFIG, rate_per_user=1000, burst=args.count):
            moved = await files.transfer(
                BFF, alice, bob, chat_id, args.count, args.size, args.parallel
            )
        for phase, found in moved["phases"].items():
            print(
                f"{phase}: {found['wall_s']} s ({found['mib_per_s']} MiB/s), per file"
                f" {found['per_file_ms']}; CPU s: store {found['store_cpu_s']}, our services"
                f" {found['our_services_cpu_s']}, Cassandra/Kafka/Redis/Jaeger"
                f" {found['backing_cpu_s']}, client {found['client_cpu_s']}"
            )
        save("files", command, moved)
    elif args.scenario == "search":
        search_chats = []
        for days in (1.0, 300.0):
            [alice, bob] = await register_and_login(BFF, 2, "search")
            [chat_id] = await open_chats(BFF, [(alice, bob)])
            fill_began = time.monotonic()
            planted_counts = await search.fill(
                INFRA, chat_id, alice.user_id, bob.user_id, args.messages, days
            )
            fill_took = time.monotonic() - fill_began
            print(f"{args.messages} over {days:g} days in {fill_took:.1f} s: {planted_counts}")
            searches = []
            for query in ("common", "frequent", "rare", "common frequent", "absent"):
                searched = await search.latencies(
                    BFF, bob.token, chat_id, query, args.rounds, args.limit
                )
                searched["ms"] = stats.summary(searched["ms"])
                first = searched["found_on_first_page"]
                print(f"  {query!r}: {first} on the first page, {searched['ms']}")
                searches.append(searched)
            search_chats.append(
                {
                    "days": days,
                    "fill_s": round(fill_took, 1),
                    "planted": planted_counts,
                    "searches": searches,
                }
            )
        save(
            "search",
            command,
            {"messages": args.messages, "limit": args.limit, "chats": search_chats},
        )
    elif args.scenario == "moves":
        layout = Layout.from_env()
        secret = (layout.state / "secrets" / "jwt").read_text().strip()
        admin = (layout.state / "secrets" / "admin").read_text().strip()
        result = await moves.partition_moves(CONFIG, admin, secret, args.streams, args.rounds)
        for number, round_ in enumerate(result["rounds"]):
            print(
                f"round {number + 1}: {round_['moved_streams']} streams moved; redirect"
                f" {round_['redirect_ms']}; resumed on the new owner {round_['resumed_ms']}"
            )
        save("moves", command, result)
    elif args.scenario == "writer-restart":
        result = await writer_restart.measure(
            BFF, CONFIG, args.rounds, args.rate, dynamic=args.dynamic
        )
        print({k: v for k, v in result.items() if k != "rounds"})
        save(f"writer-restart{'-dynamic' if args.dynamic else ''}", command, result)
    elif args.scenario == "tls":
        result = await tls_cost.tls_cost(args.rounds, args.calls, args.events)
        print({k: v for k, v in result.items() if k not in ("plaintext", "tls")})
        save("tls-cost", command, result)
    elif args.scenario == "partitions":
        counts = [int(c) for c in args.counts.split(",")]
        result = await partitions.measure(counts, args.idle_seconds)
        save("partitions", command, result)
    elif args.scenario == "keep":
        for name in args.names:
            source = RUNS / f"{name}.json"
            if not source.is_file():
                raise SystemExit(f"no result {source}; run the scenario first")
            RESULTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, RESULTS / source.name)
            print(f"kept {source} as {RESULTS / source.name}")
    else:
        await asyncio.to_thread(report.write, args.results, args.docs)
    return 0


def cli(argv: list[str] | None = None) -> int:
    """``chat-bench``: ``python -m bench`` as a command."""
    return asyncio.run(main(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(cli())
