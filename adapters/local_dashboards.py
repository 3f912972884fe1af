"""The embedded dashboard store: snapshot pages as files, named by their content, written atomically.

The id is a hash of the page, so a retried SnapshotDashboard activity publishes the same page under the same
id and nothing changes: idempotent without remembering keys. `latest.html` beside the snapshots is a copy of
the most recently published one, for people who just want "the dashboard" of an experiment.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

from abrollout.contracts.spec import EXPERIMENT_NAME_PATTERN

DASHBOARD_ID_PATTERN = r"dash-[0-9a-f]{16}"
LATEST = "latest.html"


def dashboard_id(html: str) -> str:
    """`dash-` and the first 16 hex digits of the page's SHA-256: same page, same id."""
    return "dash-" + hashlib.sha256(html.encode("utf-8")).hexdigest()[:16]


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, never half of one: write a temp file beside it, then rename."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _write_if_changed(path: Path, data: bytes) -> None:
    if not path.exists() or path.read_bytes() != data:
        write_atomic(path, data)


def _checked(value: str, pattern: str, what: str) -> str:
    """Both parts of a path come from tool arguments: refuse anything that could leave the store directory."""
    if not re.fullmatch(pattern, value):
        raise ValueError(f"not a valid {what}: {value!r}")
    return value


class LocalDashboards:
    """Snapshot pages under `<directory>/<exp_key>/<id>.html`, plus `latest.html` per experiment."""

    name = "local"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_of(self, dashboard_id: str, exp_key: str) -> Path:
        return self._folder(exp_key) / f"{_checked(dashboard_id, DASHBOARD_ID_PATTERN, 'dashboard id')}.html"

    async def publish(self, html: str, exp_key: str, label: str) -> str:
        """The page's content-addressed id. `label` is already in the page; the file name is the content."""
        return await asyncio.to_thread(self._publish, html, exp_key)

    def _folder(self, exp_key: str) -> Path:
        return self.directory / _checked(exp_key, EXPERIMENT_NAME_PATTERN, "experiment key")

    def _publish(self, html: str, exp_key: str) -> str:
        page_id = dashboard_id(html)
        path = self.path_of(page_id, exp_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = html.encode("utf-8")
        _write_if_changed(path, data)
        _write_if_changed(path.parent / LATEST, data)
        return page_id
