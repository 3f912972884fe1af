"""py-spy for the benches' `--profile`: record a process while a figure is measured, then say where its busy time
went (issue 9 asks for the profile behind every figure short of its target)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

PROJECT_CODE = re.compile(r"\((?:abrollout|activities|adapters|workflows|cli)/")
IDLE = ("EpollSelector.select", "concurrent/futures/thread.py:81")  # waiting for I/O, or for work in a pool


@contextmanager
def recording(pid: int, output: Path, rate: int) -> Iterator[None]:
    """py-spy records `pid` at `rate` Hz into `output` (collapsed stacks) for the duration of the block."""
    spy = subprocess.Popen([str(Path(sys.prefix) / "bin" / "py-spy"), "record", "--pid", str(pid), "--rate",
                            str(rate), "--nonblocking", "--format", "raw", "-o", str(output)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


@dataclass(frozen=True)
class Profile:
    """Busy samples (idle waits left out): in all, under each function of this project (inclusive), and by leaf."""

    total: int
    inclusive: Counter[str]
    leaves: Counter[str]

    @classmethod
    def read(cls, raw: Path) -> Profile:
        inclusive: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        total = 0
        for line in raw.read_text().splitlines() if raw.exists() else ():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames, n = stack.split(";"), int(count)
            if any(idle in frames[-1] for idle in IDLE):
                continue
            total += n
            leaves[frames[-1]] += n
            for frame in dict.fromkeys(re.sub(r":\d+\)$", ")", f) for f in frames if PROJECT_CODE.search(f)):
                inclusive[frame] += n
        return cls(total, inclusive, leaves)

    def summary(self, top: int = 18) -> list[str]:
        """The shares of busy samples, project functions first, then the leaf frames."""
        if not self.total:
            return ["  (no samples: is py-spy allowed to attach here? it needs ptrace rights)"]
        lines = [f"  {self.total} busy samples; project functions, inclusive:"]
        lines += [f"    {n / self.total:6.1%}  {frame}" for frame, n in self.inclusive.most_common(top)]
        lines.append("  leaf frames, exclusive:")
        lines += [f"    {n / self.total:6.1%}  {frame}" for frame, n in self.leaves.most_common(top // 2)]
        return lines
