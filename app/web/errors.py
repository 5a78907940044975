"""Every error as JSON under /api (and for probes); HTML pages get a plain error page instead."""
from __future__ import annotations

import logging
import time

from flask import Flask, jsonify, render_template, request
from markupsafe import escape
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from app.extensions import db
from app.services.errors import ServiceError

log = logging.getLogger("loom.web")
_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
          503: "unavailable"}


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/health/", "/metrics", "/ws/")) or request.accept_mimetypes.best == \
        "application/json"


def _json(status: int, message: str, code: str | None = None, field: str | None = None):
    body: dict = {"code": code or _CODES.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    return jsonify({"error": body}), status


_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 405: "Not allowed here", 409: "Conflict",
           413: "Too large", 422: "Invalid", 429: "Too many requests", 500: "Something went wrong",
           503: "Unavailable"}


def _page(status: int, message: str):
    """An HTML error inside the site's layout (navigation, a way back); plain HTML if the layout cannot render
    (the database being down, say)."""
    title = _TITLES.get(status, f"Error {status}")
    try:
        return render_template("ui/error.html", title=title, message=message), status
    except Exception:  # noqa: BLE001 (an error page must not fail in its turn)
        log.warning("error page for %s could not use the layout", status, exc_info=True)
        return f"<h1>{escape(title)}</h1><p>{escape(message)}</p>", status


def _drain_refused_body(seconds: float = 2.0) -> None:
    """Read and drop the rest of a body refused as too large, if the whole body is at most twice the limit and
    comes within `seconds` (nginx's lingering close does the same). gunicorn keeps the connection alive after the
    413 only if the body was read to its end, and says keep-alive before it knows: a client reusing the connection
    for its next request found it closed. A bigger or slower body still closes the connection, as it must."""
    stream = request.environ.get("wsgi.input")
    limit = request.max_content_length or 0
    if request.content_length is None:
        left = limit  # chunked: Werkzeug has read the first `limit` bytes already
    elif request.content_length <= 2 * limit:
        left = request.content_length  # refused from its length alone: none of it was read
    else:
        return
    sock = request.environ.get("gunicorn.socket")  # bounds each read; other servers read as they read bodies
    deadline = time.monotonic() + seconds
    prior = sock.gettimeout() if sock is not None else None
    try:
        while stream is not None and left > 0 and (remaining := deadline - time.monotonic()) > 0:
            if sock is not None:
                sock.settimeout(remaining)
            data = stream.read(min(65_536, left))
            if not data:
                return
            left -= len(data)
    except Exception:  # noqa: BLE001 (a client gone, a timeout, a broken chunk: the server closes the connection)
        return
    finally:
        if sock is not None:
            try:
                sock.settimeout(prior)
            except OSError:
                pass


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        db.session.rollback()
        if not wants_json():
            return _page(exc.status, exc.message)
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:
            _drain_refused_body()
        if not wants_json():
            if exc.code == 404:
                return _page(404, f"There is no page at {request.path}: it may have been deleted, or the link is "
                                  "wrong.")
            if exc.code and exc.code >= 400 and not getattr(exc, "valid_methods", None):
                return _page(exc.code, exc.description or exc.name)
            return exc
        message = exc.description or exc.name
        if exc.code == 404:
            message = f"no such route or resource: {request.path}"
        elif exc.code == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif exc.code == 413:
            message = "request body is too large"
        response, status = _json(exc.code or 400, message)
        if allow := getattr(exc, "valid_methods", None):  # a 405 must say what is allowed (RFC 9110)
            response.headers["Allow"] = ", ".join(allow)
        return response, status

    @app.errorhandler(IntegrityError)
    def integrity_error(exc: IntegrityError):
        db.session.rollback()
        log.info("integrity error: %s", exc.orig)
        return _json(409, "the change conflicts with existing data (a duplicate or a missing reference)")

    @app.errorhandler(DataError)
    def data_error(exc: DataError):
        db.session.rollback()
        return _json(422, "a value is out of range or malformed for the database")

    @app.errorhandler(OperationalError)
    def operational_error(exc: OperationalError):
        db.session.rollback()
        log.warning("database unavailable: %s", exc.orig)
        return _json(503, "the database is unavailable or busy; try again")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        if not wants_json():
            return _page(500, "An internal error happened; it is in the server log.")
        return _json(500, "internal error; see the server log", code="internal")
