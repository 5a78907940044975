"""Analytics: one LLMRequest row per LLM call (ok or failed), listing, and CSV/JSON export.

The loop records every call through `record_request` (pair programming passes source="pair"); the
totals, percentiles and chart buckets live in `analytics_query` and are re-exported here.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app.extensions import db
from app.models import LLMRequest
from app.models.analytics import LLM_REQUEST_SOURCES
from app.services import pricing
from app.services.analytics_query import GROUPS, Filters, summary, timeseries
from app.services.errors import ValidationError
from app.services.events import emit

EXPORT_BATCH = 1000
CSV_COLUMNS = ("id", "ts", "project_id", "bead_id", "agent_id", "run_id", "seq", "persona", "model", "provider",
               "source", "status", "error", "prompt_tokens", "completion_tokens", "latency_ms", "cost_usd",
               "estimated", "priced")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

__all__ = ["GROUPS", "Filters", "announce", "export", "list_requests", "provider_label", "record_request",
           "summary", "timeseries"]


def provider_label(base_url: str | None) -> str | None:
    """The host (and port) of a provider URL: never its credentials or query string."""
    if not base_url:
        return None
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return (f"{host}:{parts.port}" if parts.port else host) or None


def record_request(*, model: str, status: str = "ok", source: str = "loop", project_id: int | None = None,
                   bead_id: int | None = None, agent_id: int | None = None, run_id: int | None = None,
                   seq: int | None = None, persona: str | None = None, provider: str | None = None,
                   error: str | None = None, prompt_tokens: int = 0, completion_tokens: int = 0,
                   latency_ms: float = 0.0, estimated: bool = False, commit: bool = True) -> LLMRequest:
    """Add one request, priced from the price table now. With commit=False the caller commits (e.g. with
    the budget settlement) and then calls `announce(row)`."""
    if source not in LLM_REQUEST_SOURCES:
        raise ValidationError(f"source must be one of {', '.join(LLM_REQUEST_SOURCES)}", "source")
    prompt_tokens, completion_tokens = max(0, int(prompt_tokens)), max(0, int(completion_tokens))
    quote = pricing.quote(model or "", prompt_tokens, completion_tokens)
    row = LLMRequest(model=(model or "")[:200], status=status[:20], source=source, project_id=project_id,
                     bead_id=bead_id, agent_id=agent_id, run_id=run_id, seq=seq, persona=persona,
                     provider=(provider or None) and provider[:200], error=(error or None) and error[:2000],
                     prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                     latency_ms=round(max(0.0, float(latency_ms)), 1), cost_usd=quote.cost_usd,
                     estimated=bool(estimated), priced=quote.priced)
    db.session.add(row)
    if commit:
        db.session.commit()
        announce(row)
    else:
        db.session.flush()
    return row


def announce(row: LLMRequest) -> None:
    """The `llm.request` event (after commit): what the analytics page needs to update live."""
    emit("llm.request", project_id=row.project_id, bead_id=row.bead_id, agent_id=row.agent_id,
         data={"request_id": row.id, "ts": row.to_dict()["ts"], "run_id": row.run_id, "seq": row.seq,
               "persona": row.persona, "model": row.model, "source": row.source, "status": row.status,
               "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
               "latency_ms": row.latency_ms, "cost_usd": row.cost_usd})


def list_requests(filters: Filters, limit: int = 50, offset: int = 0) -> tuple[list[LLMRequest], int]:
    """Newest first."""
    total = db.session.scalar(filters.apply(select(func.count()).select_from(LLMRequest)))
    rows = db.session.scalars(filters.apply(select(LLMRequest)).order_by(LLMRequest.id.desc())
                              .limit(limit).offset(offset)).all()
    return list(rows), int(total or 0)


def _rows(filters: Filters, engine: Engine) -> Iterator[dict]:
    """Every matching request, oldest first, in keyset batches. Each batch has its own short session, so
    a slow reader holds no connection and the stream needs no Flask context (it runs after the view)."""
    after = 0
    while True:
        with Session(engine) as session:
            batch = [row.to_dict() for row in session.scalars(
                filters.apply(select(LLMRequest)).where(LLMRequest.id > after).order_by(LLMRequest.id)
                .limit(EXPORT_BATCH))]
        if not batch:
            return
        yield from batch
        after = batch[-1]["id"]


def _safe_cell(value):
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _csv(rows: Iterator[dict]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for count, row in enumerate(rows, 1):
        writer.writerow([_safe_cell(row[column]) for column in CSV_COLUMNS])
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(rows: Iterator[dict]) -> Iterator[str]:
    yield "["
    for count, row in enumerate(rows):
        yield ("," if count else "") + "\n" + json.dumps(row, ensure_ascii=False)
    yield "\n]\n"


def export(filters: Filters, format: str) -> Iterator[str]:
    """The matching requests as CSV (a header row, formula-safe cells) or a JSON array, in chunks."""
    if format not in ("csv", "json"):
        raise ValidationError("format must be csv or json", "format")
    rows = _rows(filters, db.engine)
    return _csv(rows) if format == "csv" else _json(rows)
