"""The AWS SDK for JavaScript v3 (`@aws-sdk/client-kinesis`, pinned in tests/clients/node) with its default client,
which speaks HTTP/2, against a real `shardline serve`: h2c with prior knowledge under --auth sigv4, and TLS with a
certificate made here and trusted through NODE_EXTRA_CA_CERTS. The JavaScript side is kinesis.test.mjs, run by
node's test runner; `.ci/run` installs it (npm ci). Without node_modules the tests skip, except under CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _shardline import self_signed, shardline

NODE_DIR = Path(__file__).parent / "node"
AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules" / "@aws-sdk" / "client-kinesis").is_dir():
        return "tests/clients/node is not installed (npm ci --prefix tests/clients/node)"
    return None


@pytest.fixture
def node() -> str:
    reason = _missing()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the Node.js SDK tests cannot run under CI: {reason}")
        pytest.skip(reason)
    node = shutil.which("node")
    assert node is not None
    return node


def run_node(node: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        [node, "--test", "--test-reporter=tap", "kinesis.test.mjs"],
        cwd=NODE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "# fail 0" in done.stdout and "# pass 3" in done.stdout, done.stdout


def test_default_client_over_h2c_with_sigv4(node: str, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {AKID}\naws_secret_access_key = {SECRET}\n")
    args = ["--auth", "sigv4", "--credentials", str(credentials)]
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never", *args) as running:
        run_node(node, {"SHARDLINE_ENDPOINT": running.url, "SHARDLINE_KEY_ID": AKID, "SHARDLINE_SECRET": SECRET})


def test_default_client_over_tls(node: str, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    with shardline("serve", "--port", "0", "--data-dir", str(tmp_path / "data"), "--fsync", "never", *tls) as running:
        assert running.url.startswith("https://")
        run_node(node, {"SHARDLINE_ENDPOINT": running.url, "NODE_EXTRA_CA_CERTS": str(cert)})
