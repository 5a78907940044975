"""The built-in scripted LLM provider, over real HTTP: routes, matching, streaming, faults, CLI and demo script."""
from __future__ import annotations

import asyncio
import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.scripted_llm import DEMO_SCRIPT, ScriptedLLMServer, load_script

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_ACTIONS = {"read_file", "write_file", "edit_file", "list_files", "search_text", "run_command",
                    "git_status", "git_diff", "git_commit", "create_bead", "comment", "escalate", "done"}

Serve = Callable[..., ScriptedLLMServer]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loom_messages(persona: str = "engineer", bead_id: int = 12, title: str = "Create the calculator module",
                  turn: int = 1) -> list[dict[str, str]]:
    """Messages shaped like Loom's prompt builder: system (persona), task (bead), then one exchange per turn."""
    messages = [{"role": "system", "content": f"You are ada, Engineer (persona: {persona}) on the project "
                                              f"\"demo\".\n\nBe careful.\n"},
                {"role": "user", "content": f"Bead #{bead_id}: {title}\nPriority: P2 · Type: task\n\nDo it."}]
    for _ in range(turn - 1):
        messages += [{"role": "assistant", "content": '{"actions": []}'},
                     {"role": "user", "content": '[{"type": "write_file", "status": "ok", "output": ""}]'}]
    return messages


def reply_json(content: str) -> dict[str, Any]:
    """The object inside a ```json fenced reply (the outer fence is the first and last line)."""
    first, _, rest = content.partition("\n")
    body, _, last = rest.rpartition("\n")
    assert first == "```json" and last == "```", content
    return json.loads(body)


def chat(client: httpx.Client, server: ScriptedLLMServer, **body: Any) -> httpx.Response:
    body.setdefault("model", "loom-scripted")
    body.setdefault("messages", loom_messages())
    return client.post(f"{server.url}/chat/completions", json=body)


def stream_events(client: httpx.Client, server: ScriptedLLMServer, **body: Any) -> list[str]:
    """The `data:` payloads of a streamed completion, in order."""
    body.setdefault("model", "loom-scripted")
    body.setdefault("messages", loom_messages())
    with client.stream("POST", f"{server.url}/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]


def streamed_content(events: list[str]) -> str:
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    return "".join(choice["delta"].get("content", "") for chunk in chunks for choice in chunk["choices"])


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[ScriptedLLMServer] = []

    def start(script: dict[str, Any] | Path, **options: Any) -> ScriptedLLMServer:
        server = ScriptedLLMServer(load_script(script), **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


CALC_SCRIPT: dict[str, Any] = {
    "model": "test-model",
    "rules": [
        {"match": {"persona": "engineer", "title": "(?i)calculator", "turn": 1},
         "reply": {"actions": [{"type": "write_file", "path": "calc.py", "content": "def f():\n    return {}\n"}],
                   "notes": "turn one"}},
        {"match": {"title": "(?i)calculator", "turn": [2, 3]},
         "reply": {"actions": [{"type": "comment", "text": "bead {bead_id} '{title}' by {persona} turn {turn}"}],
                   "notes": "{persona}/{turn}"}},
        {"match": {"persona": "qa-engineer"}, "reply_text": "raw text for #{bead_id} {not a placeholder}"},
    ],
    "default": {"actions": [{"type": "done", "reason": "nothing scripted"}], "notes": "default"},
}


def test_models_lists_the_script_model(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT)
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    response = client.get(f"{server.url}/models")
    assert response.status_code == 200
    assert response.json()["object"] == "list"
    assert [(m["id"], m["object"]) for m in response.json()["data"]] == [("test-model", "model")]
    assert client.get(server.url.removesuffix("/v1") + "/health").status_code == 200


def test_rule_matched_by_persona_title_and_turn(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT)
    response = chat(client, server, model="gpt-x")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "gpt-x" and body["id"]
    assert body["choices"][0]["finish_reason"] == "stop" and body["choices"][0]["message"]["role"] == "assistant"
    reply = reply_json(body["choices"][0]["message"]["content"])
    assert reply == CALC_SCRIPT["rules"][0]["reply"]  # braces in contents survive untouched
    usage = body["usage"]
    assert usage["prompt_tokens"] >= 1 and usage["completion_tokens"] >= 1
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert server.requests[-1]["model"] == "gpt-x"
    # another persona on turn 1 skips rule 0 and lands on the qa rule
    qa = chat(client, server, messages=loom_messages(persona="qa-engineer")).json()
    assert qa["choices"][0]["message"]["content"] == "raw text for #12 {not a placeholder}"


def test_turns_count_assistant_messages_and_placeholders_fill(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT)
    for turn in (2, 3):
        content = chat(client, server, messages=loom_messages(turn=turn)).json()["choices"][0]["message"]["content"]
        reply = reply_json(content)
        assert reply["actions"] == [{"type": "comment",
                                     "text": f"bead 12 'Create the calculator module' by engineer turn {turn}"}]
        assert reply["notes"] == f"engineer/{turn}"
    fourth = chat(client, server, messages=loom_messages(turn=4)).json()["choices"][0]["message"]["content"]
    assert reply_json(fourth)["notes"] == "default"


def test_default_reply_when_nothing_matches(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT)
    no_bead = [{"role": "system", "content": "persona: engineer"}, {"role": "user", "content": "hello"}]
    for messages in (loom_messages(title="Something else"), no_bead):
        content = chat(client, server, messages=messages).json()["choices"][0]["message"]["content"]
        assert reply_json(content) == CALC_SCRIPT["default"]


def test_streaming_assembles_the_same_content_with_usage(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT)
    whole = chat(client, server).json()["choices"][0]["message"]["content"]
    events = stream_events(client, server, stream_options={"include_usage": True})
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) > 3 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert streamed_content(events) == whole
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    plain = stream_events(client, server)
    assert plain[-1] == "[DONE]" and streamed_content(plain) == whole
    assert all(json.loads(event).get("usage") is None for event in plain[:-1])


def test_status_fault_fires_times_then_falls_through(serve: Serve, client: httpx.Client) -> None:
    server = serve({"rules": [{"match": {"title": "flaky"}, "fault": {"status": 503, "times": 2}},
                              {"match": {"title": "flaky"}, "reply_text": "finally"}]})
    messages = loom_messages(title="A flaky bead")
    for _ in range(2):
        response = chat(client, server, messages=messages)
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "server_error"
        assert "retry-after" not in response.headers
    response = chat(client, server, messages=messages)
    assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "finally"


def test_status_fault_with_retry_after(serve: Serve, client: httpx.Client) -> None:
    server = serve({"rules": [{"match": {}, "fault": {"status": 429, "retry_after": 7}}]})
    response = chat(client, server)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["type"] == "rate_limit_error"


def test_truncate_cuts_the_stream_without_done(serve: Serve, client: httpx.Client) -> None:
    server = serve({"rules": [{"match": {}, "fault": {"truncate": 2},
                               "reply_text": "one two three four five six seven eight nine ten"}]})
    received: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with client.stream("POST", f"{server.url}/chat/completions",
                           json={"model": "m", "messages": loom_messages(), "stream": True}) as response:
            for line in response.iter_lines():
                received.append(line)
    payloads = [line.removeprefix("data: ") for line in received if line.startswith("data: ")]
    assert len(payloads) == 2 and "[DONE]" not in payloads
    assert streamed_content(payloads) == "one two three four five six "
    with pytest.raises(httpx.RemoteProtocolError):  # non-streaming: half a body, then the connection drops
        chat(client, server)


def test_garbage_reply_is_prose(serve: Serve, client: httpx.Client) -> None:
    server = serve({"rules": [{"match": {}, "fault": {"garbage": True}}]})
    body = chat(client, server).json()
    content = body["choices"][0]["message"]["content"]
    assert "not answer in JSON" in content
    with pytest.raises(ValueError):
        json.loads(content)
    assert streamed_content(stream_events(client, server)) == content


def test_invalid_json_body(serve: Serve, client: httpx.Client) -> None:
    server = serve({"rules": [{"match": {}, "fault": {"invalid_json_body": True}}]})
    response = chat(client, server)
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    events = stream_events(client, server)
    assert events[-1] == "[DONE]"
    with pytest.raises(ValueError):
        json.loads(events[0])


def test_latency_and_fault_delay_are_applied(serve: Serve, client: httpx.Client) -> None:
    server = serve({"latency_ms": 250, "rules": [{"match": {"title": "slow"}, "fault": {"delay_ms": 200}}]})
    started = time.monotonic()
    assert chat(client, server).status_code == 200
    assert time.monotonic() - started >= 0.25
    started = time.monotonic()
    events = stream_events(client, server)
    assert time.monotonic() - started >= 0.25 and events[-1] == "[DONE]"
    started = time.monotonic()
    content = chat(client, server, messages=loom_messages(title="slow")).json()["choices"][0]["message"]["content"]
    assert time.monotonic() - started >= 0.45
    assert reply_json(content)["actions"][0]["type"] == "done"  # a delay-only fault still gets a reply
    fast = ScriptedLLMServer(load_script({"latency_ms": 250}), latency_ms=0).start()
    try:
        started = time.monotonic()
        assert chat(client, fast).status_code == 200
        assert time.monotonic() - started < 0.25
    finally:
        fast.stop()


def test_api_key_is_required_when_configured(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT, api_key="s3cret")
    unauthorized = {"error": {"message": "invalid api key", "type": "invalid_request_error"}}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        response = client.get(f"{server.url}/models", headers=headers)
        assert response.status_code == 401 and response.json() == unauthorized
    assert client.post(f"{server.url}/chat/completions", json={"messages": []}).status_code == 401
    ok = client.get(f"{server.url}/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert client.get(server.url.removesuffix("/v1") + "/health").status_code == 200


def test_unknown_routes_and_bad_bodies(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT)
    for method, path in (("GET", "/v1/nope"), ("GET", "/v1/chat/completions"), ("DELETE", "/v1/models")):
        response = client.request(method, server.url.removesuffix("/v1") + path)
        assert response.status_code == 404 and "error" in response.json()
    bad = client.post(f"{server.url}/chat/completions", content=b"{not json",
                      headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    assert client.post(f"{server.url}/chat/completions", json={"model": "m"}).status_code == 400
    assert chat(client, server).status_code == 200  # the keep-alive connection is still usable


@pytest.mark.parametrize(("script", "expected"), [
    ({"rules": [{"match": {"titel": "x"}, "reply_text": "hi"}]}, r"rules\[0\]\.match: unknown key 'titel'"),
    ({"rules": [{"reply_text": "ok"}, {"match": {"title": "(unclosed"}, "reply_text": "hi"}]},
     r"rules\[1\]\.match\.title: bad regex"),
    ({"rules": [{"reply_text": "a"}, {"reply_text": "b"}, {"match": {"turn": 1}}]},
     r"rules\[2\]: needs one of 'reply', 'reply_text' or 'fault'"),
    ({"rules": [{"match": {"turn": 0}, "reply_text": "x"}]}, r"rules\[0\]\.match\.turn"),
    ({"rules": [{"fault": {"status": 503, "garbage": True}}]}, r"rules\[0\]\.fault: status and garbage"),
    ({"rules": [{"fault": {"times": 2}}]}, r"rules\[0\]\.fault: needs one of"),
    ({"rules": [{"reply": "text", "match": {}}]}, r"rules\[0\]\.reply: must be a mapping"),
    ({"rulez": []}, r"script: unknown key 'rulez'"),
])
def test_bad_scripts_raise_value_error_naming_the_rule(script: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        load_script(script)


def test_script_files_load_from_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(CALC_SCRIPT))
    (tmp_path / "s.yaml").write_text("model: y\nrules:\n  - match: {turn: [1, 2]}\n    reply_text: hi\n")
    assert load_script(tmp_path / "s.json").model == "test-model"
    assert load_script(str(tmp_path / "s.yaml")).rules[0].match.turn == frozenset({1, 2})
    with pytest.raises(ValueError, match="cannot read script"):
        load_script(tmp_path / "missing.yaml")


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    with subprocess.Popen([sys.executable, "-m", "app.scripted_llm", "--port", str(port)], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == f"Scripted LLM on http://127.0.0.1:{port}/v1"
            with httpx.Client(timeout=10) as http:
                models = http.get(f"http://127.0.0.1:{port}/v1/models")
            assert models.status_code == 200 and models.json()["data"][0]["id"] == "loom-scripted"
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_cli_rejects_a_bad_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - match: {title: '(oops'}\n    reply_text: x\n")
    for script, message in ((bad, "rules[0].match.title: bad regex"), (tmp_path / "missing.yaml", "cannot read")):
        result = subprocess.run([sys.executable, "-m", "app.scripted_llm", "--script", str(script),
                                 "--port", "0"], cwd=ROOT, check=False, capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 2
        assert message in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_keep_alive_requests_are_not_delayed_by_nagle(serve: Serve, client: httpx.Client) -> None:
    server = serve(CALC_SCRIPT)
    chat(client, server)
    started = time.monotonic()
    for _ in range(100):
        assert chat(client, server).status_code == 200
    assert time.monotonic() - started < 2.0  # Nagle + delayed ACK would cost ~40 ms each (4 s)


def test_hundred_concurrent_streams(serve: Serve) -> None:
    server = serve({"latency_ms": 200, "rules": [{"match": {}, "reply_text": "alpha beta gamma delta " * 20}]})

    async def one(http: httpx.AsyncClient) -> str:
        payload = {"model": "m", "messages": loom_messages(), "stream": True}
        async with http.stream("POST", f"{server.url}/chat/completions", json=payload) as response:
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        return streamed_content([line.removeprefix("data: ") for line in lines])

    async def run_all() -> list[str]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=10, limits=limits) as http:
            return await asyncio.gather(*(one(http) for _ in range(100)))

    started = time.monotonic()
    contents = asyncio.run(run_all())
    assert time.monotonic() - started < 5.0
    assert contents == ["alpha beta gamma delta " * 20] * 100


DEMO_BEADS = [("Create the calculator module", "engineer", ["write_file", "run_command", "git_commit", "done"]),
              ("Write tests for the calculator", "qa-engineer", ["write_file", "run_command", "git_commit", "done"]),
              ("Document the calculator", "docs-writer", ["write_file", "git_commit", "done"]),
              ("Add a square root function", "engineer", ["write_file", "git_commit", "done"])]


def test_demo_script_walks_every_bead_to_done(serve: Serve, client: httpx.Client, tmp_path: Path) -> None:
    server = serve(DEMO_SCRIPT, latency_ms=0)
    assert 100 <= load_script(DEMO_SCRIPT).latency_ms <= 1000
    files: dict[str, str] = {}
    commands: list[str] = []
    for bead_id, (title, persona, expected) in enumerate(DEMO_BEADS, start=1):
        kinds = []
        for turn in range(1, 10):
            messages = loom_messages(persona=persona, bead_id=bead_id, title=title, turn=turn)
            content = chat(client, server, messages=messages).json()["choices"][0]["message"]["content"]
            reply = reply_json(content)
            assert set(reply) == {"actions", "notes"} and reply["notes"]
            assert reply["actions"] and {a["type"] for a in reply["actions"]} <= CONTRACT_ACTIONS
            kinds += [action["type"] for action in reply["actions"]]
            files.update({a["path"]: a["content"] for a in reply["actions"] if a["type"] == "write_file"})
            commands += [a["command"] for a in reply["actions"] if a["type"] == "run_command"]
            if kinds[-1] == "done":
                break
        assert kinds == expected, title
    assert files["notes/bead-4.md"].startswith("# Bead 4: Add a square root function")
    # the demo's files really work: the module, its tests and the smoke commands pass
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "python3"
        result = subprocess.run([sys.executable, *argv[1:]], check=False, cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, (command, result.stderr)
        if argv[1] == "-c":
            assert result.stdout.strip() == "5"
        else:
            assert "Ran 5 tests" in result.stderr and "OK" in result.stderr
