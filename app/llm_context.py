"""Fitting a conversation into the model's context window: keep the system and task messages and the
newest turns, and say how many earlier messages were left out. A leaf module (stdlib only)."""
from __future__ import annotations

OMITTED_NOTICE = "[... {n} earlier messages omitted to fit the context window ...]"


def content_chars(message: dict) -> int:
    content = message.get("content") or ""
    if isinstance(content, list):  # multi-part content: count the text parts
        return sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return len(content) if isinstance(content, str) else len(str(content))


def trim_messages(messages: list[dict], max_chars: int) -> list[dict]:
    """Fit a conversation into max_chars of content: system messages and the task stay, the oldest turns go.

    Whole turns (an assistant message and the messages answering it) are kept newest first while they fit;
    a notice after the first user message counts the dropped ones. Over-long pinned messages stay anyway.
    """
    if sum(content_chars(message) for message in messages) <= max_chars:
        return list(messages)
    first_user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
    pinned = {i for i, m in enumerate(messages) if m.get("role") == "system" or i == first_user}
    budget = max_chars - sum(content_chars(messages[i]) for i in pinned)
    budget -= len(OMITTED_NOTICE.format(n=len(messages)))
    kept = set(pinned)
    for turn in reversed(_turns(messages, pinned)):
        size = sum(content_chars(messages[i]) for i in turn)
        if size > budget:
            break
        budget -= size
        kept.update(turn)
    dropped = len(messages) - len(kept)
    notice = {"role": "user", "content": OMITTED_NOTICE.format(n=dropped)}
    notice_after = first_user if first_user is not None else max(pinned, default=-1)
    trimmed = [notice] if dropped and notice_after == -1 else []
    for i, message in enumerate(messages):
        if i in kept:
            trimmed.append(message)
        if dropped and i == notice_after:
            trimmed.append(notice)
    return trimmed


def _turns(messages: list[dict], pinned: set[int]) -> list[list[int]]:
    """Indices of the unpinned messages grouped into turns; each assistant message starts a new turn."""
    turns: list[list[int]] = []
    for i, message in enumerate(messages):
        if i in pinned:
            continue
        if not turns or message.get("role") == "assistant":
            turns.append([])
        turns[-1].append(i)
    return turns
