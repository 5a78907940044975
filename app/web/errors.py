"""Every error as JSON under /api (and for probes); HTML pages get a plain error page instead."""
from __future__ import annotations

import logging

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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        db.session.rollback()
        if not wants_json():
            return _page(exc.status, exc.message)
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
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
