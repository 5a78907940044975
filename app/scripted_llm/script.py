"""The scripted provider's script: rules, faults, what a request is about, and the reply it gets.

The facts a rule matches on are read from the prompt Loom builds (`RequestContext.from_messages`):
`persona: <name>` in the first system message, `Bead #<id>: <title>` in the first user message, and the
turn (1 + assistant messages so far). Those two markers are the whole contract with the prompt builder.
Loading and validating script files lives in `app.scripted_llm.loading`.
"""
from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

PERSONA_RE = re.compile(r"persona: ([a-z0-9-]+)")
BEAD_RE = re.compile(r"^Bead #(\d+): (.+)$", re.MULTILINE)
PLACEHOLDER_RE = re.compile(r"\{(bead_id|title|persona|turn)\}")
DEFAULT_MODEL = "loom-scripted"
DEFAULT_REPLY: dict[str, Any] = {"actions": [{"type": "done", "reason": "nothing scripted for this bead"}],
                                 "notes": "default"}
GARBAGE_TEXT = "I think I will not answer in JSON. Let me explain in prose what I would do instead."
INVALID_JSON_BODY = "<html><body><h1>502 Bad Gateway</h1><p>upstream sent an invalid response</p></body></html>"

Template = dict[str, Any] | str  # a dict is sent as a ```json fenced block, a str verbatim


def message_text(message: Any) -> str:
    """The text of one chat message: a plain string, or the text parts of a content list."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


@dataclass(frozen=True)
class RequestContext:
    """What a chat-completions request is about, as far as the script can tell (None: not found)."""

    persona: str | None = None
    bead_id: int | None = None
    title: str | None = None
    turn: int = 1
    last_message: str = ""

    @classmethod
    def from_messages(cls, messages: list[Any]) -> RequestContext:
        chat = [m for m in messages if isinstance(m, dict)]
        system = next((message_text(m) for m in chat if m.get("role") == "system"), "")
        task = next((message_text(m) for m in chat if m.get("role") == "user"), "")
        persona = PERSONA_RE.search(system)
        bead = BEAD_RE.search(task)
        return cls(persona=persona.group(1) if persona else None,
                   bead_id=int(bead.group(1)) if bead else None,
                   title=bead.group(2).strip() if bead else None,
                   turn=1 + sum(1 for m in chat if m.get("role") == "assistant"),
                   last_message=message_text(chat[-1]) if chat else "")

    def substitute(self, text: str) -> str:
        """Replace {bead_id}, {title}, {persona}, {turn} in one pass; every other brace is left alone."""
        values = {"bead_id": self.bead_id, "title": self.title, "persona": self.persona, "turn": self.turn}
        return PLACEHOLDER_RE.sub(lambda m: "" if values[m.group(1)] is None else str(values[m.group(1)]), text)


@dataclass(frozen=True)
class Match:
    """The conditions of a rule; an unset condition always holds, a set one fails on a missing fact."""

    persona: str | None = None
    title: re.Pattern[str] | None = None
    turn: frozenset[int] | None = None
    bead_id: int | None = None
    last_message: re.Pattern[str] | None = None

    def accepts(self, ctx: RequestContext) -> bool:
        if self.persona is not None and ctx.persona != self.persona:
            return False
        if self.title is not None and (ctx.title is None or not self.title.search(ctx.title)):
            return False
        if self.turn is not None and ctx.turn not in self.turn:
            return False
        if self.bead_id is not None and ctx.bead_id != self.bead_id:
            return False
        return self.last_message is None or bool(self.last_message.search(ctx.last_message))


@dataclass(frozen=True)
class Fault:
    """A misbehaviour to inject; `times` limits how many matching requests get it (None: always)."""

    status: int | None = None
    message: str | None = None  # the error message sent with `status` (e.g. a context-window error)
    retry_after: str | None = None
    delay_ms: int = 0
    truncate: int | None = None
    garbage: str | None = None
    invalid_json_body: str | None = None
    times: int | None = None


@dataclass
class Rule:
    """One scripted case: conditions, then a reply template and/or a fault."""

    index: int
    match: Match
    reply: Template | None = None
    fault: Fault | None = None
    fired: int = 0


@dataclass(frozen=True)
class Choice:
    """The answer chosen for one request: the assistant content and the fault to apply, if any."""

    content: str
    fault: Fault | None = None
    rule_index: int | None = None  # None: the script's default reply


def render(template: Template, ctx: RequestContext) -> str:
    """A str is sent verbatim; a dict as JSON in a ```json fenced block, placeholders filled in its strings."""
    if isinstance(template, str):
        return ctx.substitute(template)
    return "```json\n" + json.dumps(_fill(template, ctx), indent=2, ensure_ascii=False) + "\n```"


def _fill(value: Any, ctx: RequestContext) -> Any:
    if isinstance(value, str):
        return ctx.substitute(value)
    if isinstance(value, dict):
        return {key: _fill(item, ctx) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, ctx) for item in value]
    return value


@dataclass
class Script:
    """Rules in order (first match wins) and a default reply; safe to share between server threads."""

    rules: list[Rule] = field(default_factory=list)
    default: Template = field(default_factory=lambda: dict(DEFAULT_REPLY))
    model: str = DEFAULT_MODEL
    latency_ms: int = 0
    stream_chunk_delay_ms: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def choose(self, ctx: RequestContext) -> Choice:
        """The first rule that matches and still has fault budget left decides; else the default."""
        with self._lock:
            for rule in self.rules:
                if not rule.match.accepts(ctx):
                    continue
                fault = rule.fault
                if fault is not None and fault.times is not None and rule.fired >= fault.times:
                    continue
                rule.fired += 1
                if fault is not None and fault.garbage is not None:
                    return Choice(ctx.substitute(fault.garbage), fault, rule.index)
                template = rule.reply if rule.reply is not None else self.default
                return Choice(render(template, ctx), fault, rule.index)
        return Choice(render(self.default, ctx), None, None)

    def reset(self) -> None:
        """Forget how often each rule fired, so `times`-limited faults fire again."""
        with self._lock:
            for rule in self.rules:
                rule.fired = 0
