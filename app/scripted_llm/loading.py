"""Load a script from a YAML/JSON file or a dict, and validate it with errors that name the bad rule.

Every problem raises ValueError with a location such as `rules[2].match.title: bad regex ...`, so a
typo in a test script or in demo.yaml fails loudly at load time instead of silently never matching.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from app.scripted_llm.script import (
    DEFAULT_MODEL,
    DEFAULT_REPLY,
    GARBAGE_TEXT,
    INVALID_JSON_BODY,
    Fault,
    Match,
    Rule,
    Script,
    Template,
)

SCRIPT_KEYS = ("model", "latency_ms", "stream_chunk_delay_ms", "rules", "default", "description")
RULE_KEYS = ("match", "reply", "reply_text", "fault", "description")
MATCH_KEYS = ("persona", "title", "turn", "bead_id", "last_message")
FAULT_KEYS = ("status", "message", "retry_after", "delay_ms", "truncate", "garbage", "invalid_json_body", "times")


def load_script(source: str | Path | dict[str, Any] | Script) -> Script:
    """A Script from a file path (.json as JSON, anything else as YAML), a dict, or a Script (as is)."""
    if isinstance(source, Script):
        return source
    if isinstance(source, dict):
        return parse_script(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read script {path}: {exc.strerror or exc}") from None
    syntax = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if syntax == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"script {path} is not valid {syntax}: {exc}") from None
    try:
        return parse_script(data)
    except ValueError as exc:
        raise ValueError(f"script {path}: {exc}") from None


def parse_script(data: Any) -> Script:
    if not isinstance(data, dict):
        raise ValueError("a script must be a mapping with a 'rules' list")
    _check_keys(data, SCRIPT_KEYS, "script")
    rules = data.get("rules") or []
    if not isinstance(rules, list):
        raise ValueError("'rules' must be a list")
    model = data.get("model", DEFAULT_MODEL)
    if not isinstance(model, str) or not model:
        raise ValueError("'model' must be a non-empty string")
    return Script(rules=[_parse_rule(index, raw) for index, raw in enumerate(rules)],
                  default=_template(data.get("default", DEFAULT_REPLY), "default"),
                  model=model,
                  latency_ms=_int(data.get("latency_ms", 0), "latency_ms"),
                  stream_chunk_delay_ms=_int(data.get("stream_chunk_delay_ms", 0), "stream_chunk_delay_ms"))


def _parse_rule(index: int, raw: Any) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a rule must be a mapping, got {raw!r}")
    _check_keys(raw, RULE_KEYS, where)
    if "reply" in raw and "reply_text" in raw:
        raise ValueError(f"{where}: give either 'reply' or 'reply_text', not both")
    if not any(key in raw for key in ("reply", "reply_text", "fault")):
        raise ValueError(f"{where}: needs one of 'reply', 'reply_text' or 'fault'")
    reply: Template | None = None
    if "reply" in raw:
        if not isinstance(raw["reply"], dict):
            raise ValueError(f"{where}.reply: must be a mapping such as {{actions: [...], notes: ...}}; "
                             "use reply_text for raw text")
        reply = raw["reply"]
    elif "reply_text" in raw:
        if not isinstance(raw["reply_text"], str):
            raise ValueError(f"{where}.reply_text: must be a string")
        reply = raw["reply_text"]
    fault = _parse_fault(raw["fault"], f"{where}.fault") if "fault" in raw else None
    return Rule(index=index, match=_parse_match(raw.get("match") or {}, f"{where}.match"), reply=reply, fault=fault)


def _parse_match(raw: Any, where: str) -> Match:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping")
    _check_keys(raw, MATCH_KEYS, where)
    persona = raw.get("persona")
    if persona is not None and not isinstance(persona, str):
        raise ValueError(f"{where}.persona: must be a string")
    turn = raw.get("turn")
    turns = None
    if turn is not None:
        values = turn if isinstance(turn, list) else [turn]
        if not values:
            raise ValueError(f"{where}.turn: must be an integer or a non-empty list of integers")
        turns = frozenset(_int(value, f"{where}.turn", minimum=1) for value in values)
    bead_id = raw.get("bead_id")
    return Match(persona=persona, title=_regex(raw.get("title"), f"{where}.title"), turn=turns,
                 bead_id=None if bead_id is None else _int(bead_id, f"{where}.bead_id", minimum=1),
                 last_message=_regex(raw.get("last_message"), f"{where}.last_message"))


def _parse_fault(raw: Any, where: str) -> Fault:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: must be a mapping")
    _check_keys(raw, FAULT_KEYS, where)
    status = raw.get("status")
    if status is not None:
        status = _int(status, f"{where}.status", minimum=400)
        if status > 599:
            raise ValueError(f"{where}.status: must be an HTTP error status (400-599), got {status}")
    retry_after = raw.get("retry_after")
    if retry_after is not None and status is None:
        raise ValueError(f"{where}.retry_after: only makes sense with a status")
    message = raw.get("message")
    if message is not None and (status is None or not isinstance(message, str)):
        raise ValueError(f"{where}.message: a text, and only with a status")
    fault = Fault(status=status, message=message,
                  retry_after=None if retry_after is None else str(retry_after),
                  delay_ms=_int(raw.get("delay_ms", 0), f"{where}.delay_ms"),
                  truncate=None if raw.get("truncate") is None else _int(raw["truncate"], f"{where}.truncate"),
                  garbage=_text_flag(raw.get("garbage"), GARBAGE_TEXT, f"{where}.garbage"),
                  invalid_json_body=_text_flag(raw.get("invalid_json_body"), INVALID_JSON_BODY,
                                               f"{where}.invalid_json_body"),
                  times=None if raw.get("times") is None else _int(raw["times"], f"{where}.times", minimum=1))
    kinds = [name for name in ("status", "garbage", "invalid_json_body") if getattr(fault, name) is not None]
    if len(kinds) > 1:
        raise ValueError(f"{where}: {' and '.join(kinds)} cannot be combined")
    if fault.truncate is not None and (fault.status is not None or fault.invalid_json_body is not None):
        raise ValueError(f"{where}: truncate cannot be combined with {kinds[0]}")
    if not kinds and fault.truncate is None and not fault.delay_ms:
        raise ValueError(f"{where}: needs one of status, delay_ms, truncate, garbage or invalid_json_body")
    return fault


def _template(value: Any, where: str) -> Template:
    if not isinstance(value, dict | str):
        raise ValueError(f"{where}: must be a reply mapping or a string")
    return value


def _text_flag(value: Any, default_text: str, where: str) -> str | None:
    """`true` means the built-in text, a string means that text, false/absent means no fault."""
    if value is None or value is False:
        return None
    if value is True:
        return default_text
    if isinstance(value, str):
        return value
    raise ValueError(f"{where}: must be true or a string")


def _regex(pattern: Any, where: str) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: must be a regex string")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{where}: bad regex {pattern!r}: {exc}") from None


def _int(value: Any, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _check_keys(raw: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key {', '.join(map(repr, unknown))} (allowed: {', '.join(allowed)})")
