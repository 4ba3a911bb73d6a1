"""A real `shardline serve`: monitoring closed under --auth sigv4 until a token is given, then open to the token's
holders (the dashboard page to everyone), `shardline top` with the token, and odd requests answered 400/404
through the real HTTP server."""

from __future__ import annotations

import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path

from _shardline import CLI, shardline

TOKEN = "0123456789abcdef0123456789abcdef"
WAIT_S = 20.0

CREDENTIALS = "[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = secret\n"


@contextmanager
def serve(tmp_path: Path, *extra: str) -> Iterator[str]:
    args = ("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never", *extra)
    with (tmp_path / "serve.log").open("a") as log, shardline(*args, stderr=log, wait_s=WAIT_S) as running:
        yield running.url
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(timeout=WAIT_S) == 0


def get(url: str, token: str | None = None) -> tuple[int, Message, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def top_once(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [*CLI, "top", "--once", "--endpoint", url, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin"})


def test_sigv4_closes_monitoring_until_a_token_is_given(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(CREDENTIALS)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with serve(tmp_path, "--auth", "sigv4", "--credentials", str(creds)) as url:
        for path in ("/metrics", "/api/overview", "/api/query?name=shardline_stream_shards"):
            status, headers, _ = get(url + path, TOKEN)
            assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Bearer"), path
        assert get(url + "/health")[0] == 200 and get(url + "/dashboard")[0] == 200
    assert "monitoring is closed" in (tmp_path / "serve.log").read_text()

    sigv4 = ("--auth", "sigv4", "--credentials", str(creds))
    with serve(tmp_path, *sigv4, "--monitoring-token-file", str(token_file)) as url:
        assert get(url + "/metrics")[0] == 401 and get(url + "/metrics", "nope")[0] == 401
        status, _, body = get(url + "/metrics", TOKEN)
        assert status == 200 and b"shardline_metrics_emf_lines_total" in body
        assert get(url + "/dashboard/app.js")[0] == 200
        refused = top_once(url)
        assert refused.returncode == 1 and "HTTP 401 (monitoring is protected" in refused.stderr
        done = top_once(url, "--token-file", str(token_file))
        assert done.returncode == 0 and "STREAMS" in done.stdout, done.stderr

    with serve(tmp_path, *sigv4, "--monitoring", "open") as url:
        assert get(url + "/metrics")[0] == 200


def test_odd_requests_answer_400_or_404_through_the_server(tmp_path: Path) -> None:
    with serve(tmp_path) as url:
        for path in ("/dashboard/%00", "/dashboard/a%00b", "/dashboard/..%2f..%2fcli.py", "/dashboard/" + "x" * 4000):
            assert get(url + path)[0] == 404, path
        for q in ("start=inf", "start=nan", "end=1e400", "start=-1e400", "period=-1", "start=1&period=1"):
            status, headers, body = get(f"{url}/api/query?name=shardline_stream_shards&{q}")
            assert status == 400 and headers.get("Content-Type") == "application/json", (q, body)
