"""Lenient reading of LLM replies and strict checking of each action."""
from __future__ import annotations

import json

import pytest

from app.services.action_parser import MAX_REPLY_CHARS, parse_reply, validate_action

ACTIONS = {"actions": [{"type": "write_file", "path": "a.py", "content": "x = {1: 2}\n"}], "notes": "n"}


@pytest.mark.parametrize("text", [
    json.dumps(ACTIONS),
    "```json\n" + json.dumps(ACTIONS, indent=2) + "\n```",
    "Sure! Here is my plan.\n\n```\n" + json.dumps(ACTIONS) + "\n```\nLet me know.",
    "I will write the file: " + json.dumps(ACTIONS) + " and then wait.",
    "<think>maybe {\"actions\": []} is wrong</think>\n" + json.dumps(ACTIONS),
    "<think>unterminated thoughts about {braces}\n",
])
def test_lenient_parsing(text):
    parsed = parse_reply(text)
    if "unterminated" in text:
        assert parsed.error and "empty reply" in parsed.error
        return
    assert parsed.error is None, parsed.error
    assert parsed.actions == ACTIONS["actions"] and parsed.notes == "n"


def test_single_bare_action_is_accepted():
    assert parse_reply('{"type": "git_status"}').actions == [{"type": "git_status"}]


@pytest.mark.parametrize("text,needle", [
    ("I refuse to answer in JSON.", "no JSON object"),
    ("", "empty reply"),
    ('{"actions": "write everything"}', "must be a list"),
    ('{"notes": "no actions key", "foo": 1}', "no JSON object"),
    ("{" * 50, "no JSON object"),
    ('{"actions": [' + ",".join(['{"type": "git_status"}'] * 30) + "]}", "too many actions"),
])
def test_unreadable_replies_become_errors(text, needle):
    parsed = parse_reply(text)
    assert parsed.error and needle in parsed.error


def test_huge_reply_is_refused_without_parsing():
    parsed = parse_reply("x" * (MAX_REPLY_CHARS + 1))
    assert parsed.error and "too large" in parsed.error


@pytest.mark.parametrize("action,needle", [
    ({"type": "launch_missiles"}, "unknown action type"),
    ({"path": "x"}, "unknown action type"),
    ("write_file", "must be a JSON object"),
    ({"type": "write_file", "path": "a"}, "missing required parameter 'content'"),
    ({"type": "write_file", "path": 3, "content": ""}, "wrong type"),
    ({"type": "list_files", "depth": True}, "wrong type"),
    ({"type": "read_file", "path": "a\x00b"}, "NUL"),
    ({"type": "git_commit", "message": "m", "amend": True}, "unknown parameter"),
])
def test_invalid_actions_are_named(action, needle):
    problem = validate_action(action)
    assert problem and needle in problem


def test_valid_actions_pass():
    for action in ({"type": "git_status"}, {"type": "done"}, {"type": "run_command", "command": "ls", "timeout": 5},
                   {"type": "create_bead", "title": "t", "blocked_by": [1], "tags": ["qa"], "priority": 1},
                   {"type": "escalate", "reason": "r", "options": ["a", "b"]}):
        assert validate_action(action) is None, action
