"""Server processes for the API benchmark: a `shardline serve` child and a kinesalite peer, with /proc readings.

kinesalite is installed from the npm registry into a cache directory once (``npm install --prefix DIR
kinesalite@3``) and started from a small Node wrapper that binds 127.0.0.1 only: its own command line listens on
every interface, which a benchmark on a shared machine must not do.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["Server", "ensure_kinesalite", "kinesalite_version", "start_kinesalite", "start_shardline"]

_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT_S = 60.0

# Two lines, so what runs is obvious: the module from the cache directory's node_modules, loopback only, port 0,
# and the chosen port printed once the socket is listening.
_WRAPPER = (
    "const server = require('kinesalite')"
    "({createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 1000});\n"
    "server.listen(0, '127.0.0.1', () => console.log('kinesalite listening on ' + server.address().port));\n"
)


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    _drain: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_s(self) -> float:
        """utime + stime of the whole process (every thread), in seconds."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        # The command name may hold spaces and parentheses: fields are counted after its closing one.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM (a clean close), then SIGKILL if it does not exit in time; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop within {timeout_s:.0f}s of SIGTERM: killing pid {self.pid}")
                self.proc.kill()
                self.proc.wait()
        if self._drain is not None:
            self._drain.join(5)
        return self.proc.returncode


def _spawn(
    name: str, cmd: list[str], log_path: Path, cwd: Path | None = None
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    err = log_path.open("ab")
    try:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=cwd, start_new_session=True
        )
    finally:
        err.close()
    assert proc.stdout is not None
    return proc, proc.stdout


def _watch_stdout(
    name: str, proc: subprocess.Popen[bytes], out: IO[bytes], log_path: Path, pattern: re.Pattern[str]
) -> tuple[re.Match[str], threading.Thread]:
    """Wait for the line announcing the address; keep draining stdout into the log so the child never blocks."""
    found: queue.Queue[re.Match[str] | None] = queue.Queue()

    def drain() -> None:
        matched = False
        with log_path.open("ab") as sink:
            for raw in out:
                sink.write(raw)
                sink.flush()
                if not matched and (m := pattern.search(raw.decode("utf-8", "replace"))):
                    matched = True
                    found.put(m)
        if not matched:
            found.put(None)

    t = threading.Thread(target=drain, name=f"{name}-stdout", daemon=True)
    t.start()
    try:
        m = found.get(timeout=READY_TIMEOUT_S)
    except queue.Empty:
        m = None
    if m is None:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{name} did not announce its address (exit status {proc.poll()}); log:\n{tail}")
    return m, t


def _wait_ready(name: str, host: str, port: int, probe: tuple[str, str, bytes, dict[str, str]]) -> None:
    """Poll until the server answers `probe` with 200."""
    method, path, body, headers = probe
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = ""
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        try:
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}"
        except OSError as exc:
            last = str(exc)
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s: {last}")


def start_shardline(
    data_dir: Path, log_path: Path, *, fsync: str = "always", profile_out: Path | None = None
) -> Server:
    """`shardline serve` from the virtualenv this interpreter belongs to, optionally under cProfile."""
    exe = Path(sys.executable).parent / "shardline"
    if not exe.exists():
        raise RuntimeError(f"no shardline command next to {sys.executable}: install the project into this venv")
    args = ["serve", "--host", "127.0.0.1", "--port", "0", "--fsync", fsync, "--data-dir", str(data_dir)]
    args += ["--log-level", "warning"]
    cmd = [str(exe), *args]
    if profile_out is not None:
        cmd = [sys.executable, "-m", "cProfile", "-o", str(profile_out), str(exe), *args]
    proc, out = _spawn("shardline", cmd, log_path)
    try:
        m, drain = _watch_stdout(
            "shardline", proc, out, log_path, re.compile(r"serving Kinesis at http://([\d.]+):(\d+)")
        )
        host, port = m.group(1), int(m.group(2))
        _wait_ready("shardline", host, port, ("GET", "/health", b"", {}))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Server("shardline", proc, host, port, log_path, drain)


def _installed_version(peer_dir: Path) -> str | None:
    pkg = peer_dir / "node_modules" / "kinesalite" / "package.json"
    try:
        version = json.loads(pkg.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return version if isinstance(version, str) else None


def ensure_kinesalite(peer_dir: Path) -> str | None:
    """Install kinesalite 3 under peer_dir unless it is there; returns why it cannot run, or None when it can."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are not both on PATH"
    version = _installed_version(peer_dir)
    if version is None or not version.startswith("3."):
        peer_dir.mkdir(parents=True, exist_ok=True)
        log(f"installing kinesalite@3 from the npm registry into {peer_dir}")
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(peer_dir), "kinesalite@3", "--no-audit", "--no-fund", "--silent"],
                check=False,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=600,
            )
        except subprocess.TimeoutExpired:
            return "npm install kinesalite@3 timed out"
        version = _installed_version(peer_dir)
        if done.returncode != 0 or version is None:
            return f"npm install kinesalite@3 failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-500:]}"
    (peer_dir / "serve-loopback.js").write_text(_WRAPPER)
    return None


def kinesalite_version(peer_dir: Path) -> str:
    return _installed_version(peer_dir) or "?"


def start_kinesalite(peer_dir: Path, log_path: Path) -> Server:
    node = shutil.which("node")
    assert node is not None
    # Started from peer_dir so require('kinesalite') resolves to the cached install and nothing else.
    proc, out = _spawn("kinesalite", [node, "serve-loopback.js"], log_path, cwd=peer_dir)
    try:
        m, drain = _watch_stdout("kinesalite", proc, out, log_path, re.compile(r"kinesalite listening on (\d+)"))
        host, port = "127.0.0.1", int(m.group(1))
        probe_headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "Kinesis_20131202.ListStreams",
            "Authorization": "AWS4-HMAC-SHA256 Credential=x/20200101/us-east-1/kinesis/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0",
            "X-Amz-Date": "20200101T000000Z",
        }
        _wait_ready("kinesalite", host, port, ("POST", "/", b"{}", probe_headers))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return Server("kinesalite", proc, host, port, log_path, drain)
