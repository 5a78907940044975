"""The benchmark table and the lines around it: the machine, the run's duration, how busy the machine was."""
from __future__ import annotations

import os
import platform
import resource
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import redis
import sqlalchemy as sa

from bench.harness import Row, is_postgres


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split("=" if "=" in prefix else ":", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "?"


def database_version(url: str | None) -> str:
    if not url or not is_postgres(url):
        return f"SQLite {sqlite3.sqlite_version}"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return f"PostgreSQL {conn.execute(sa.text('SHOW server_version')).scalar()}".split(" (")[0]
    finally:
        engine.dispose()


def redis_version(url: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        return f"Redis {client.info('server')['redis_version']}"
    finally:
        client.close()


def machine_line(database_url: str | None, redis_url: str, private_redis: bool) -> str:
    memory_kb = int(_first("/proc/meminfo", "MemTotal").split()[0]) if Path("/proc/meminfo").exists() else 0
    where = "private server" if private_redis else redis_url.rsplit("@", 1)[-1]
    return (f"Machine: {os.cpu_count()} cores ({_first('/proc/cpuinfo', 'model name')}), "
            f"{memory_kb / 1024 / 1024:.0f} GiB, {_first('/etc/os-release', 'PRETTY_NAME=')}; "
            f"Python {platform.python_version()}; {database_version(database_url)}; "
            f"{redis_version(redis_url)} ({where}); load average at start {os.getloadavg()[0]:.2f}")


def machine_ticks() -> tuple[float, float]:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat (Linux)."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


@dataclass
class CPUWindow:
    """Machine-wide busy CPU against this benchmark's own (its process and every child it has waited for)."""

    busy0: float = 0.0
    total0: float = 0.0
    own0: float = 0.0

    @staticmethod
    def _stat() -> tuple[float, float]:
        return machine_ticks()

    @staticmethod
    def _own() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def start(self) -> CPUWindow:
        if Path("/proc/stat").exists():
            self.busy0, self.total0 = self._stat()
        self.own0 = self._own()
        return self

    def line(self, elapsed_s: float) -> str:
        if not Path("/proc/stat").exists():
            return ""
        busy1, total1 = self._stat()
        cores = os.cpu_count() or 1
        busy = (busy1 - self.busy0) / max(total1 - self.total0, 1) * 100
        own = (self._own() - self.own0) / elapsed_s / cores * 100
        return (f"Machine CPU during the run: {busy:.0f}% of {cores} cores busy, {own:.0f}% by the benchmark's "
                f"own processes; the rest is PostgreSQL, a shared Redis and anything else running "
                f"(load average now {os.getloadavg()[0]:.2f})")


def table(rows: list[Row]) -> str:
    width = max(len(r.name) for r in rows)
    value_width = max(len(r.value) for r in rows)
    lines = [f"  {'benchmark'.ljust(width)}  {'value'.rjust(value_width)}  note",
             f"  {'-' * width}  {'-' * value_width}  {'-' * 4}"]
    lines += [f"  {r.name.ljust(width)}  {r.value.rjust(value_width)}  {r.note}".rstrip() for r in rows]
    return "\n".join(lines)
