"""Event fan-out: publish → browser-side (websocket client) latency with many connected clients, and the
database load of the web process with and without viewers (it must not grow with the number of viewers).

Events are published on the bus at a steady rate while N websocket clients (asyncio, one thread) are
connected to the real web server (gunicorn, threads); each event carries its send time, and every client
records when it arrived. Database load is the PostgreSQL transaction counter of the database over the same
window, with 0 and with N viewers (on SQLite it is reported as n/a).

Run: `python -m bench --only events`.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time

import sqlalchemy as sa
import websockets

from app.bus import EventBus
from bench.harness import Bench, Row, is_postgres, percentile


SETTLE_S = 11.0


def transactions(database_url: str) -> int | None:
    """Committed + rolled-back transactions of this database so far (PostgreSQL), else None."""
    if not is_postgres(database_url):
        return None
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_stat_force_next_flush()"))
            return int(conn.execute(sa.text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
            ).scalar())
    finally:
        engine.dispose()


async def publish_for(bus: EventBus, seconds: float, rate: float, tag: str) -> int:
    sent, interval = 0, 1.0 / rate
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        bus.publish("bench.ping", data={"sent": time.time(), "tag": tag, "n": sent})
        sent += 1
        await asyncio.sleep(max(0.0, started + sent * interval - time.monotonic()))
    return sent


async def client(url: str, token: str, ready: asyncio.Event, latencies: list[float], tag: str,
                 stop: asyncio.Event) -> None:
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                  max_queue=None, open_timeout=60) as ws:
        await ws.send(json.dumps({"subscribe": {"types": ["bench.ping"]}}))
        ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            now = time.time()
            event = json.loads(raw)
            if event.get("type") == "bench.ping" and event["data"].get("tag") == tag:
                latencies.append(now - event["data"]["sent"])


async def measure_clients(bench: Bench, url: str, token: str, clients: int, seconds: float, rate: float) -> dict:
    bus = EventBus(bench.app.extensions["loom.redis"](), maxlen=1000)
    ws_url = url.replace("http://", "ws://") + "/ws/events"
    tag = f"run-{clients}-{time.time()}"
    latencies: list[float] = []
    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = []
    for ready in readies:  # connect in small batches, as browsers arriving would
        tasks.append(asyncio.create_task(client(ws_url, token, ready, latencies, tag, stop)))
        if len(tasks) % 20 == 0:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=120)
    # Let the connection set-up queries reach the counter: PostgreSQL flushes an idle backend's statistics
    # up to 10 s late, so counting right away would charge the handshakes to the measured window.
    await asyncio.sleep(SETTLE_S if is_postgres(bench.database_url) else 1.0)
    before, own0 = transactions(bench.database_url), time.process_time()
    sent = await publish_for(bus, seconds, rate, tag)
    client_cpu = (time.process_time() - own0) / seconds * 100  # the clients (and publisher) share this process
    await asyncio.sleep(1.0)  # the last events arrive
    after = transactions(bench.database_url)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    expected = sent * clients
    return {"clients": clients, "sent": sent, "received": len(latencies), "expected": expected,
            "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
            "mean_ms": (statistics.fmean(latencies) * 1000) if latencies else float("nan"), "client_cpu": client_cpu,
            "db_tps": None if before is None else (after - before) / seconds}


def measure(clients: int, rate: float, seconds: float) -> list[dict]:
    with Bench({"rules": []}, AUTO_DISPATCH=False) as bench:
        url = bench.start_web(threads=clients + 32)  # a websocket holds a thread of the web server
        token = bench.admin_token(url)
        results = [asyncio.run(measure_clients(bench, url, token, n, seconds, rate)) for n in (1, clients)]
        idle_before = transactions(bench.database_url)
        time.sleep(seconds)
        idle_after = transactions(bench.database_url)
        results.append({"clients": 0, "db_tps": None if idle_before is None else (idle_after - idle_before) / seconds})
        return results


def rows(results: list[dict], rate: float) -> list[Row]:
    one, many, none = results
    out = []
    for r in (one, many):
        lost = r["expected"] - r["received"]
        out.append(Row(f"event fan-out, {r['clients']} websocket clients: latency p50", f"{r['p50_ms']:.1f} ms",
                       f"p99 {r['p99_ms']:.1f} ms, {r['received']}/{r['expected']} delivered ({lost} lost), "
                       f"{rate:g} events/s; the clients' process used {r['client_cpu']:.0f}% of a core"))
    out.append(Row(f"fan-out p99, {many['clients']} vs 1 client",
                   f"{many['p99_ms'] / max(one['p99_ms'], 1e-9):.1f}x", "ratio"))
    if many["db_tps"] is None:
        out.append(Row("web DB transactions/s with viewers", "n/a", "needs PostgreSQL (LOOM_BENCH_DATABASE_URL)"))
    else:
        out.append(Row(f"web DB transactions/s: 0 / 1 / {many['clients']} viewers",
                       f"{none['db_tps']:.1f} / {one['db_tps']:.1f} / {many['db_tps']:.1f}",
                       "must not grow with viewers (events come from Redis only)"))
    return out


def run(quick: bool = False) -> list[Row]:
    clients, rate, seconds = (20, 20.0, 3.0) if quick else (200, 20.0, 10.0)
    return rows(measure(clients, rate, seconds), rate)
