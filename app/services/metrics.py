"""Prometheus metrics, computed when scraped from the database and Redis, so they are right however many
web and worker processes there are (no per-process counters to add up). The text is cached a few seconds
per process, so a tight scrape loop costs the database one round of queries per interval.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import case, func, select
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from app.models import (AGENT_STATUSES, BEAD_STATUSES, RUN_STATUSES, Agent, Bead, LLMRequest, Project, Provider, Run,
                        Step, WebhookDelivery)
from app.services.bead_graph import READY
from app.services.provider_health import ENV_KEY
from app.services.ralph import ACTIONS_KEY

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STEP_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
DISPATCH_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
KOMBU_PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport keeps priority 3/6/9 messages in "<queue>\x06\x16<n>"
KOMBU_PRIORITIES = (3, 6, 9)
KOMBU_UNACKED = "unacked"  # the hash of delivered, not yet acknowledged messages (late acks)
UP = ("healthy", "degraded")


@dataclass(frozen=True)
class LLMUsage:
    model: str
    status: str  # "ok" or an error kind
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: not recorded by the source


def usage_from_steps() -> list[LLMUsage]:
    """From the steps ledger: a step is one successful request; failed requests and cost are not in it."""
    model = func.coalesce(Step.model, "unknown")
    rows = db.session.execute(select(model, func.count(), func.sum(Step.prompt_tokens),
                                     func.sum(Step.completion_tokens)).group_by(model)).all()
    return [LLMUsage(name, "ok", int(n), int(p or 0), int(c or 0), None) for name, n, p, c in rows]


def usage_from_llm_requests() -> list[LLMUsage]:
    """From `llm_requests` (one row per request, ok or failed, with its cost): the source once the loop
    records every request there."""
    model = func.coalesce(func.nullif(LLMRequest.model, ""), "unknown")
    rows = db.session.execute(select(model, LLMRequest.status, func.count(), func.sum(LLMRequest.prompt_tokens),
                                     func.sum(LLMRequest.completion_tokens), func.sum(LLMRequest.cost_usd))
                              .group_by(model, LLMRequest.status)).all()
    return [LLMUsage(name, status, int(n), int(p or 0), int(c or 0), float(usd or 0.0))
            for name, status, n, p, c, usd in rows]


# The loop and pair turns record every request (ok or failed, with its cost) in llm_requests: the source.
llm_usage = usage_from_llm_requests


def _seconds_between(later: ColumnElement, earlier: ColumnElement) -> ColumnElement:
    if db.session.get_bind().dialect.name == "sqlite":
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0
    return func.extract("epoch", later - earlier)


def _histogram(name: str, doc: str, seconds: ColumnElement, buckets: Sequence[float], source) -> Metric:
    """One query: the count, the sum and a cumulative count per bucket."""
    columns = [func.count(), func.coalesce(func.sum(seconds), 0.0)]
    columns += [func.coalesce(func.sum(case((seconds <= le, 1), else_=0)), 0) for le in buckets]
    row = db.session.execute(select(*columns).select_from(source)).one()
    pairs = [(str(le), int(n)) for le, n in zip(buckets, row[2:], strict=True)] + [("+Inf", int(row[0]))]
    return HistogramMetricFamily(name, doc, buckets=pairs, sum_value=float(row[1]))


def _by_status(name: str, doc: str, column, statuses: Iterable[str]) -> GaugeMetricFamily:
    counts = dict(db.session.execute(select(column, func.count()).group_by(column)).all())
    family = GaugeMetricFamily(name, doc, labels=["status"])
    for status in dict.fromkeys([*statuses, *counts]):
        family.add_metric([status], counts.get(status, 0))
    return family


def database_metrics() -> list[Metric]:
    out: list[Metric] = [
        _by_status("loom_beads", "Beads by status", Bead.status, BEAD_STATUSES),
        GaugeMetricFamily("loom_ready_beads", "Open beads whose blockers are all closed",
                          value=db.session.scalar(select(func.count()).select_from(Bead).where(READY)) or 0),
        _by_status("loom_runs", "Runs (one agent working one bead) by status", Run.status, RUN_STATUSES),
        _by_status("loom_agents", "Agents by status", Agent.status, AGENT_STATUSES),
        _by_status("loom_webhook_deliveries", "Notification webhook deliveries by status", WebhookDelivery.status,
                   ("pending", "delivered", "failed")),
        CounterMetricFamily("loom_steps", "Action-loop steps (LLM turns) recorded",
                            value=db.session.scalar(select(func.count()).select_from(Step)) or 0),
        _histogram("loom_step_latency_seconds", "LLM latency of a step", Step.latency_ms / 1000.0,
                   STEP_BUCKETS_S, Step),
    ]
    first = select(Run.bead_id, func.min(Run.started_at).label("claimed")).group_by(Run.bead_id).subquery()
    joined = first.join(Bead, Bead.id == first.c.bead_id)
    out.append(_histogram("loom_dispatch_latency_seconds", "From a bead's creation to its first claim (run start)",
                          _seconds_between(first.c.claimed, Bead.created_at), DISPATCH_BUCKETS_S, joined))
    tokens = CounterMetricFamily("loom_llm_tokens", "LLM tokens", labels=["model", "kind"])
    cost = CounterMetricFamily("loom_llm_cost_usd", "LLM cost in US dollars (where the provider's price is known)",
                               labels=["model"])
    requests = CounterMetricFamily("loom_llm_requests", "LLM requests by model and outcome (ok or the error kind)",
                                   labels=["model", "status"])
    costs: dict[str, float] = {}
    tokens_by_model: dict[str, list[int]] = {}
    for usage in llm_usage():
        requests.add_metric([usage.model, usage.status], usage.requests)
        pair = tokens_by_model.setdefault(usage.model, [0, 0])
        pair[0] += usage.prompt_tokens
        pair[1] += usage.completion_tokens
        if usage.cost_usd is not None:
            costs[usage.model] = costs.get(usage.model, 0.0) + usage.cost_usd
    for model, (prompt, completion) in tokens_by_model.items():
        tokens.add_metric([model, "prompt"], prompt)
        tokens.add_metric([model, "completion"], completion)
    for model, usd in costs.items():
        cost.add_metric([model], usd)
    out += [tokens, cost, requests]
    return out


def _queue_names() -> list[str]:
    dedicated = db.session.scalars(select(Project.id).where(Project.dedicated.is_(True)).order_by(Project.id)).all()
    return ["default", *(f"project.{pid}" for pid in dedicated)]


def redis_metrics(client: redis.Redis, queues: list[str]) -> tuple[list[Metric], bytes | None]:
    """Queue lengths (every priority list of a queue), unacked messages, Ralph's actions, the env provider."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for key in (queue, *(f"{queue}{KOMBU_PRIORITY_SEP}{p}" for p in KOMBU_PRIORITIES)):
            pipe.llen(key)
    pipe.hlen(KOMBU_UNACKED)
    pipe.hgetall(ACTIONS_KEY)
    pipe.get(ENV_KEY)
    replies = pipe.execute()
    lengths = GaugeMetricFamily("loom_queue_length", "Messages waiting in a Celery queue", labels=["queue"])
    per_queue = 1 + len(KOMBU_PRIORITIES)
    for n, queue in enumerate(queues):
        lengths.add_metric([queue], sum(replies[n * per_queue:(n + 1) * per_queue]))
    unacked, actions, env_provider = replies[len(queues) * per_queue:]
    ralph = CounterMetricFamily("loom_ralph_actions", "Actions Ralph took, by kind", labels=["kind"])
    for kind, count in sorted(actions.items()):
        ralph.add_metric([kind.decode() if isinstance(kind, bytes) else kind], int(count))
    return [lengths, GaugeMetricFamily("loom_queue_unacked", "Messages delivered to workers, not yet acknowledged",
                                       value=unacked), ralph], env_provider


def provider_metrics(env_provider: bytes | None, env_configured: bool) -> list[Metric]:
    per = GaugeMetricFamily("loom_provider_up", "1 when the provider's last health check passed",
                            labels=["provider"])
    up = 0
    for name, status in db.session.execute(select(Provider.name, Provider.status).order_by(Provider.id)).all():
        per.add_metric([name], int(status in UP))
        up += status in UP
    if env_configured:
        status = json.loads(env_provider).get("status") if env_provider else "unknown"
        per.add_metric(["LOOM_PROVIDER_URL"], int(status in UP))
        up += status in UP
    return [GaugeMetricFamily("loom_providers_up", "Providers whose last health check passed", value=up), per]


def collect(client: redis.Redis, config: dict) -> list[Metric]:
    families = database_metrics()
    redis_up = 1
    try:
        found, env_provider = redis_metrics(client, _queue_names())
        families += found
    except redis.RedisError:
        redis_up, env_provider = 0, None
    families += provider_metrics(env_provider, bool(config.get("PROVIDER_URL")))
    families.append(GaugeMetricFamily("loom_redis_up", "1 when Redis answered this scrape", value=redis_up))
    db.session.rollback()  # end the read transaction: hold no pooled connection between scrapes
    return families


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def exposition(families: list[Metric]) -> bytes:
    """The Prometheus text format (0.0.4) of these metric families."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


_cache: dict[str, tuple[float, bytes]] = {}
_cache_lock = threading.Lock()


def scrape(client: redis.Redis, config: dict) -> bytes:
    """The exposition text, recomputed at most every METRICS_CACHE_SECONDS in this process."""
    ttl, key = float(config.get("METRICS_CACHE_SECONDS", 5.0)), config["DATABASE_URL"]
    with _cache_lock:  # concurrent scrapes wait for one computation instead of each running the queries
        cached = _cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < ttl:
            return cached[1]
        text = exposition(collect(client, config))
        _cache[key] = (time.monotonic(), text)
        return text
