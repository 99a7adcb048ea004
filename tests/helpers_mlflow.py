"""The REST API of the tests' MLflow server (conftest.mlflow_server), and a relay that can stall it mid-run.

The relay is a plain HTTP forwarder on 127.0.0.1 in front of the real server: it holds one chosen request
(say the first `runs/log-batch`, sent right after a run starts), so that a test can act at a known moment
of a stage's logging, as a slow network would let it, instead of racing a run that takes a second.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

# Headers that belong to one connection, not to the message: the relay's own connections set them.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "host"}


def api(url: str, endpoint: str, **query: str) -> dict:
    response = requests.get(f"{url}/api/2.0/mlflow/{endpoint}", params=query, timeout=10)
    response.raise_for_status()
    return response.json()


def search_runs(url: str, dataset: str = "tiny") -> list[dict]:
    """The runs of experiment overfit-first/<dataset>, newest first (none if it does not exist yet)."""
    response = requests.get(
        f"{url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": f"overfit-first/{dataset}"},
        timeout=10,
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    response = requests.post(
        f"{url}/api/2.0/mlflow/runs/search",
        json={
            "experiment_ids": [response.json()["experiment"]["experiment_id"]],
            "order_by": ["attributes.start_time DESC"],
        },
        timeout=10,
    )
    response.raise_for_status()
    return response.json().get("runs", [])


def tags(run: dict) -> dict[str, str]:
    return {item["key"]: item["value"] for item in run["data"].get("tags", [])}


@dataclass
class Relay:
    """Forwards every request to `upstream`, except the first whose path contains `hold`: that one waits
    until `release` is set and is then answered 503 (its sender is gone by then)."""

    upstream: str
    hold: str
    url: str = ""
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


def _relay_handler(relay: Relay) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def relay(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if relay.hold in self.path and not relay.held.is_set():
                relay.held.set()
                relay.release.wait(600)
                self.send_error(503)
                return
            headers = {key: value for key, value in self.headers.items() if key.lower() not in HOP_BY_HOP}
            answer = requests.request(self.command, relay.upstream + self.path, data=body, headers=headers, timeout=60)
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def relay_to(upstream: str, hold: str) -> Iterator[Relay]:
    """A Relay on a free port of 127.0.0.1; on exit the held request is let go and the relay stopped."""
    relay = Relay(upstream, hold)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _relay_handler(relay))
    httpd.daemon_threads = True
    relay.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        relay.release.set()
        httpd.shutdown()
        httpd.server_close()


def wait_for(event: threading.Event, process: subprocess.Popen[str], what: str, timeout: float = 300) -> None:
    """Wait until `event` is set; fail with the process's output if it ends or the time runs out first."""
    deadline = time.monotonic() + timeout
    while not event.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.communicate()[0]
            pytest.fail(f"{what} did not happen (exit status {process.returncode}):\n{output}")
