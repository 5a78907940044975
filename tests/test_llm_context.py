"""Trimming a conversation to the provider's context (app/llm_context.py): oldest whole exchanges go first, with a
note saying so; the system messages and the task always stay."""
from __future__ import annotations

from app.llm import trim_messages


def conversation(turns: int, size: int = 40) -> list[dict]:
    messages = [{"role": "system", "content": "S" * size}, {"role": "user", "content": "T" * size}]
    for n in range(turns):
        messages += [{"role": "assistant", "content": f"{n}a".ljust(size, ".")},
                     {"role": "user", "content": f"{n}u".ljust(size, ".")}]
    return messages


def test_trim_keeps_everything_that_fits():
    messages = conversation(3)  # 320 characters
    assert trim_messages(messages, 320) == messages


def test_trim_drops_oldest_pairs_and_says_so():
    messages = conversation(5)  # 480 characters
    trimmed = trim_messages(messages, 400)
    notice = {"role": "user", "content": "[... 4 earlier messages omitted to fit the context window ...]"}
    assert trimmed == messages[:2] + [notice] + messages[6:]
    assert sum(len(m["content"]) for m in trimmed) <= 400  # the notice counts too


def test_trim_keeps_whole_pairs_only():
    messages = conversation(2) + [{"role": "assistant", "content": "short"}, {"role": "user", "content": "L" * 200}]
    trimmed = trim_messages(messages, 300)
    assert [m["role"] for m in trimmed] == ["system", "user", "user"]  # the last pair is too big: both go
    assert trimmed[2]["content"].startswith("[... 6 earlier messages omitted")


def test_trim_keeps_every_system_message_in_place():
    messages = conversation(4)
    messages.insert(5, {"role": "system", "content": "reminder"})
    trimmed = trim_messages(messages, 300)
    assert [m for m in trimmed if m["role"] == "system"] == [messages[0], messages[5]]
    assert trimmed[-1] == messages[-1]


def test_trim_returns_system_and_task_even_when_they_are_too_long():
    messages = [{"role": "system", "content": "S" * 500}, {"role": "user", "content": "T" * 500},
                {"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}]
    trimmed = trim_messages(messages, 100)
    assert trimmed[:2] == messages[:2] and len(trimmed) == 3
    assert "2 earlier messages omitted" in trimmed[2]["content"]
    only = [{"role": "user", "content": "U" * 500}]
    assert trim_messages(only, 10) == only
