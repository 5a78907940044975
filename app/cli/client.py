"""The CLI's HTTP side: the httpx JSON client, saved credentials, the per-invocation session and CliError."""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
import httpx

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT_SECONDS = 30.0
STREAM_READ_SECONDS = 120.0  # a streamed answer sends a keep-alive every 15 s
NOT_LOGGED_IN = "not logged in or key rejected — run `loom login` or set LOOM_API_KEY"


# --------------------------------------------------------------------------- errors and the HTTP client

class CliError(click.ClickException):
    """A failure shown as `Error: ...` on stderr with exit status 1 (click's usage errors keep status 2)."""


def _error_message(response: httpx.Response) -> str:
    """The API's `{"error": {message, field?}}` as one line, or a fallback for a non-JSON answer."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, dict) or not error.get("message"):
        return f"HTTP {response.status_code} from {response.request.method} {response.request.url}"
    field = f" (field: {error['field']})" if error.get("field") else ""
    return f"{error['message']}{field}"


class Client:
    """A thin JSON client: one method per HTTP call, every failure turned into a CliError."""

    def __init__(self, server: str, token: str | None, timeout: float = TIMEOUT_SECONDS) -> None:
        self.server = normalise_server(server)
        headers = {"Accept": "application/json", "User-Agent": "loom-cli"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, params: dict | None = None, body: dict | None = None,
                api: bool = True, accept: Iterable[int] = (), auth_hint: bool = True) -> Any:
        """Call `path` (under /api/v1 unless api=False); return the decoded JSON of a 2xx answer.

        Statuses in `accept` are returned like successes (e.g. 503 from the readiness probe);
        `auth_hint=False` shows the server's own message for a 401 (wrong password at login).
        """
        url = self.server + ("/api/v1" if api else "") + path
        query = {key: value for key, value in (params or {}).items() if value is not None}
        try:
            response = self._http.request(method, url, params=query, json=body)
        except httpx.TimeoutException:
            raise CliError(f"cannot reach Loom at {self.server}: no answer within {TIMEOUT_SECONDS:.0f} s") from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise CliError(f"cannot reach Loom at {self.server}: {exc}") from None
        if response.status_code == 401 and auth_hint:
            raise CliError(NOT_LOGGED_IN)
        if response.status_code >= 400 and response.status_code not in accept:
            raise CliError(_error_message(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise CliError(f"unexpected non-JSON answer from {url} (HTTP {response.status_code})") from None

    def stream(self, path: str, body: dict) -> Iterator[tuple[str, Any]]:
        """POST `body` and read the server-sent-events answer: (event name, decoded data) as they arrive."""
        url = self.server + "/api/v1" + path
        try:
            with self._http.stream("POST", url, json=body, headers={"Accept": "text/event-stream"},
                                   timeout=httpx.Timeout(TIMEOUT_SECONDS, read=STREAM_READ_SECONDS)) as response:
                if response.status_code == 401:
                    raise CliError(NOT_LOGGED_IN)
                if response.status_code >= 400:
                    response.read()
                    raise CliError(_error_message(response))
                name = "message"
                for line in response.iter_lines():
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        try:
                            yield name, json.loads(line[5:])
                        except ValueError:
                            raise CliError(f"unreadable event from {url}: {line[:200]}") from None
                    elif not line:
                        name = "message"
        except httpx.TimeoutException:
            raise CliError(f"Loom at {self.server} stopped answering (silent for {STREAM_READ_SECONDS:.0f} s)"
                           ) from None
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            raise CliError(f"cannot reach Loom at {self.server}: {exc}") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict | None = None) -> Any:
        return self.request("POST", path, body=body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


# --------------------------------------------------------------------------- saved credentials

def normalise_server(server: str) -> str:
    return server.strip().rstrip("/")


def credentials_path(config_dir: str | None) -> Path:
    base = Path(config_dir) if config_dir else Path.home() / ".config" / "loom"
    return base / "credentials.json"


def load_credentials(path: Path) -> dict[str, dict]:
    """Saved tokens keyed by server URL; a missing or unreadable file means none."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    servers = data.get("servers") if isinstance(data, dict) else None
    return servers if isinstance(servers, dict) else {}


def save_credentials(path: Path, servers: dict[str, dict]) -> None:
    """Write atomically with mode 0600 (the directory 0700): the file holds bearer tokens."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = path.with_name(path.name + ".tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"servers": servers}, fh, indent=2)
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------- the per-invocation session

class Session:
    """What every command needs: the server, the output format, and (lazily) an authenticated client."""

    def __init__(self, server: str, output: str, api_key: str | None, config_dir: str | None) -> None:
        self.server = normalise_server(server)
        self.output = output
        self.api_key = api_key or None
        self.credentials = credentials_path(config_dir)
        self._client: Client | None = None

    @property
    def json(self) -> bool:
        return self.output == "json"

    def token(self) -> str | None:
        """--api-key / LOOM_API_KEY first, then the token `loom login` saved for this server."""
        if self.api_key:
            return self.api_key
        return load_credentials(self.credentials).get(self.server, {}).get("token") or None

    def client(self, authenticated: bool = True) -> Client:
        if not authenticated:
            return Client(self.server, None)
        if self._client is None:
            self._client = Client(self.server, self.token())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_session = click.make_pass_decorator(Session)
