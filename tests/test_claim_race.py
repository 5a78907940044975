"""64 concurrent claims of one ready bead through the REST API: exactly one 200, 63 x 409 (on both databases)."""
from __future__ import annotations

import threading
from collections import Counter

import httpx
import pytest

from tests.conftest import unique

CLAIMERS = 64
ROUNDS = 12


def _setup(server, token: str, agents: int) -> tuple[dict, list[int]]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        project = http.post("/projects", json={"name": unique("race")}).json()
        agent_ids = [http.post("/agents", json={"name": unique("a"), "persona": "engineer",
                                                "project_id": project["id"]}).json()["id"] for _ in range(agents)]
    return project, agent_ids


def _race(server, token: str, bead_id: int, agent_ids: list[int]) -> Counter:
    """Fire one claim per agent id at the same instant; count the status codes."""
    barrier = threading.Barrier(len(agent_ids))
    statuses: list[int] = []
    lock = threading.Lock()
    # One pooled client shared by the threads: each request gets its own connection.
    http = httpx.Client(base_url=server.url + "/api/v1", timeout=60, headers={"Authorization": f"Bearer {token}"},
                        limits=httpx.Limits(max_connections=len(agent_ids), max_keepalive_connections=0))

    def claim(agent_id: int) -> None:
        barrier.wait()
        response = http.post(f"/beads/{bead_id}/claim", json={"agent_id": agent_id})
        assert response.headers["content-type"].startswith("application/json")
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=claim, args=(a,)) for a in agent_ids]
    with http:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return Counter(statuses)


@pytest.mark.slow
@pytest.mark.parametrize("server_fixture", ["live_server", "sqlite_live_server"])
def test_exactly_one_claim_wins(request, server_fixture):
    server = request.getfixturevalue(server_fixture)
    token = server.token()
    project, agent_ids = _setup(server, token, CLAIMERS)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        for round_no in range(ROUNDS):
            bead = http.post("/beads", json={"project_id": project["id"], "title": f"race {round_no}"}).json()
            counts = _race(server, token, bead["id"], agent_ids)
            assert counts == Counter({200: 1, 409: CLAIMERS - 1}), (server_fixture, round_no, counts)
            got = http.get(f"/beads/{bead['id']}").json()
            assert got["status"] == "in_progress" and got["fencing_token"] == 1
            working = http.get("/agents", params={"project_id": project["id"], "status": "working"}).json()
            assert [a["id"] for a in working["items"]] == [got["assigned_to"]]
            assert working["items"][0]["current_bead_id"] == bead["id"]
            http.post(f"/beads/{bead['id']}/close", json={})  # frees the winner for the next round


@pytest.mark.slow
@pytest.mark.parametrize("server_fixture", ["live_server", "sqlite_live_server"])
def test_one_agent_racing_for_many_beads_gets_one(request, server_fixture):
    """The same agent claiming 16 different beads at once ends up holding exactly one."""
    server = request.getfixturevalue(server_fixture)
    token = server.token()
    project, (agent_id,) = _setup(server, token, 1)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        beads = [http.post("/beads", json={"project_id": project["id"], "title": f"b{i}"}).json()["id"]
                 for i in range(16)]
    barrier = threading.Barrier(len(beads))
    results: dict[int, int] = {}

    shared = httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=60,
                          limits=httpx.Limits(max_connections=len(beads), max_keepalive_connections=0))

    def claim(bead_id: int) -> None:
        barrier.wait()
        results[bead_id] = shared.post(f"/beads/{bead_id}/claim", json={"agent_id": agent_id}).status_code

    threads = [threading.Thread(target=claim, args=(b,)) for b in beads]
    with shared:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert Counter(results.values()) == Counter({200: 1, 409: 15})
    with httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30) as http:
        in_progress = http.get("/beads", params={"project_id": project["id"], "status": "in_progress"}).json()
    assert in_progress["total"] == 1
