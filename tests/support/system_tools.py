"""System tools some tests need (a compose validator, a browser): found on PATH, else installed with apt-get once
per session where that is possible, else the test is skipped with one line saying how to run it."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time

import pytest

APT_BUDGET_SECONDS = 180.0
"""For everything one install attempt runs (an install, a list update, the retry), so a slow mirror cannot stall
the suite."""


def _apt_get(args: list[str], deadline: float) -> subprocess.CompletedProcess[str]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise subprocess.TimeoutExpired(["apt-get", *args], APT_BUDGET_SECONDS)
    return subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=60", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=remaining,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, check=False)


@functools.cache
def apt_install(package: str) -> str:
    """Install a Debian package; returns '' on success, else why not. Cached: one attempt per package and session."""
    if shutil.which("apt-get") is None:
        return "no apt-get"
    if os.geteuid() != 0:
        return "not root, so no apt-get install"
    deadline = time.monotonic() + APT_BUDGET_SECONDS
    try:
        done = _apt_get(["install", "-y", package], deadline)
        if done.returncode != 0:  # on a fresh machine the package lists are often empty or stale
            _apt_get(["update"], deadline)
            done = _apt_get(["install", "-y", package], deadline)
    except subprocess.TimeoutExpired:
        return f"apt-get install {package} took over {APT_BUDGET_SECONDS:.0f} s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"apt-get install {package} failed: {last}"
    return ""


def system_tool(name: str, debian_package: str, how: str) -> str:
    """The path of `name`, installing `debian_package` if it is missing; skips the calling test, with `how`, when
    neither works."""
    found = shutil.which(name)
    if found is None:
        problem = apt_install(debian_package)
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"{name} not available ({problem or f'{debian_package} has no {name}'}): {how}")
    return found
