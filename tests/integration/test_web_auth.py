"""The worker's web server: every path but the health probe (and /metrics, while public)
needs the bearer token, Faust's own table views included."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.conversation import Conversation

pytestmark = pytest.mark.integration

#: Our views, Faust's blueprints (the table view reads conversation windows), and a path
#: that does not exist: the middleware refuses before routing, so none can be forgotten.
GUARDED = [
    "/gateway/status",
    "/gateway/qr.png",
    "/gateway/screenshot.png",
    "/table/",
    "/table/windows/",
    "/router/",
    "/",
    "/no/such/path",
]


def _status(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_every_path_but_health_and_metrics_needs_the_token(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    conv = Conversation(kafka_broker, tmp_path)
    try:
        worker = conv.start_worker()
        token = worker.token
        assert token
        for path in ("/health", "/metrics"):
            assert _status(worker.port, path, None)[0] == 200, path
        for path in GUARDED:
            status, body = _status(worker.port, path, None)
            assert status == 401, path
            assert json.loads(body)["code"] == "unauthorized"
            assert _status(worker.port, path, "not-the-token")[0] == 403, path
            assert _status(worker.port, path, token)[0] not in (401, 403), path
        assert _status(worker.port, "/table/", token)[0] == 200  # the token opens it
    finally:
        conv.close()


def test_metrics_can_be_closed_too(kafka_broker: Broker, tmp_path: Path) -> None:
    conv = Conversation(kafka_broker, tmp_path, WABOT_METRICS_PUBLIC="false")
    try:
        worker = conv.start_worker()
        assert _status(worker.port, "/metrics", None)[0] == 401
        assert _status(worker.port, "/metrics", worker.token)[0] == 200
        assert _status(worker.port, "/health", None)[0] == 200
    finally:
        conv.close()
