"""Reading an LLM reply: one JSON object with `actions` (fenced or not, after prose or <think>), then each
action checked against the protocol. Bad replies become errors fed back to the LLM, never exceptions.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MAX_REPLY_CHARS = 1_000_000
MAX_ACTIONS = 25
_THINK = re.compile(r"<think>.*?(</think>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n(.*?)```", re.DOTALL)

# action -> {param: (type, required)}
PROTOCOL: dict[str, dict[str, tuple[type | tuple, bool]]] = {
    "read_file": {"path": (str, True)},
    "write_file": {"path": (str, True), "content": (str, True)},
    "edit_file": {"path": (str, True), "old": (str, True), "new": (str, True)},
    "list_files": {"path": (str, False), "depth": (int, False)},
    "search_text": {"query": (str, True), "path": (str, False)},
    "run_command": {"command": (str, True), "timeout": ((int, float), False)},
    "git_status": {},
    "git_diff": {},
    "git_commit": {"message": (str, True)},
    "create_bead": {"title": (str, True), "description": (str, False), "priority": (int, False),
                    "blocked_by": (list, False), "tags": (list, False)},
    "comment": {"text": (str, True)},
    "escalate": {"reason": (str, True), "question": (str, False), "options": (list, False)},
    "done": {"reason": (str, False)},
}
TERMINAL = ("done", "escalate")
MUTATING = ("write_file", "edit_file", "run_command", "git_commit", "create_bead", "comment", "escalate", "done")


@dataclass
class ParsedReply:
    actions: list[dict] = field(default_factory=list)
    notes: str | None = None
    error: str | None = None  # set when the reply as a whole could not be read


def _candidates(text: str) -> list[str]:
    """Where a JSON object may be: fenced blocks first, then every '{' in the text."""
    found = [m.group(1) for m in _FENCE.finditer(text)]
    found.append(text)
    return found


def _first_object(text: str) -> Any:
    decoder = json.JSONDecoder()
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict) and ("actions" in value or "type" in value):
            return value
    return None


def parse_reply(text: str) -> ParsedReply:
    if len(text) > MAX_REPLY_CHARS:
        return ParsedReply(error=f"reply too large ({len(text)} characters; the limit is {MAX_REPLY_CHARS})")
    cleaned = _THINK.sub("", text).strip()
    if not cleaned:
        return ParsedReply(error="empty reply: answer with one JSON object {\"actions\": [...], \"notes\": \"...\"}")
    value = None
    for candidate in _candidates(cleaned):
        value = _first_object(candidate)
        if value is not None:
            break
    if value is None:
        return ParsedReply(error="no JSON object with \"actions\" found in the reply: answer with one JSON object "
                                 "{\"actions\": [{\"type\": ...}], \"notes\": \"...\"}")
    if "actions" not in value:  # a single bare action
        value = {"actions": [value]}
    actions, notes = value.get("actions"), value.get("notes")
    if not isinstance(actions, list):
        return ParsedReply(error="\"actions\" must be a list of action objects")
    if len(actions) > MAX_ACTIONS:
        return ParsedReply(error=f"too many actions in one turn ({len(actions)}; at most {MAX_ACTIONS})")
    return ParsedReply(actions=actions, notes=notes if isinstance(notes, str) else None)


def validate_action(action: Any) -> str | None:
    """None when the action is well formed, else a message for the LLM."""
    if not isinstance(action, dict):
        return "each action must be a JSON object with a \"type\""
    kind = action.get("type")
    if kind not in PROTOCOL:
        return f"unknown action type {kind!r}; valid types: {', '.join(PROTOCOL)}"
    params = PROTOCOL[kind]
    for name, (expected, required) in params.items():
        if name not in action or action[name] is None:
            if required:
                return f"{kind}: missing required parameter {name!r}"
            continue
        value = action[name]
        if expected is int and isinstance(value, bool) or not isinstance(value, expected):
            return f"{kind}: parameter {name!r} has the wrong type"
        if isinstance(value, str) and "\x00" in value:
            return f"{kind}: parameter {name!r} contains a NUL character"
    unknown = set(action) - set(params) - {"type"}
    if unknown:
        return f"{kind}: unknown parameter(s) {', '.join(sorted(unknown))}"
    return None
