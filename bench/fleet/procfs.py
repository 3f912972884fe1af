"""Process figures from /proc: CPU time and peak RSS of the worker and the server, the whole machine's busy time,
and the CPU time of each thread of a process. Read from outside (or, for threads, by the process itself), so the
figures cost the measured process nothing."""

from __future__ import annotations

import os
import threading
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_cpu_seconds(stat: str) -> float:
    """utime + stime (fields 14 and 15 of proc(5)) of a stat line; the command name may hold spaces or ')'."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process (all its threads) so far."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine used so far (user, nice, system, irq, softirq, steal)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:3]) + sum(values[5:8])) / CLK_TCK


def own_threads_cpu() -> dict[int, tuple[str, float]]:
    """{tid: (thread name, CPU seconds)} for every thread of this process: Python's name where Python started the
    thread, the kernel's `comm` otherwise (the SDK's Rust threads, native libraries' pools)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    found = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            cpu = _stat_cpu_seconds((task / "stat").read_text())
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        tid = int(task.name)
        found[tid] = (names.get(tid, comm), cpu)
    return found
