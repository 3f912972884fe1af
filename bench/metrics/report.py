"""The bench's printout: one row per engine and size against the targets, how each engine's check grows with the
rows, and where a check's time goes. Misses are printed as FAIL with the measured value."""

from __future__ import annotations

from collections.abc import Sequence

from bench.metrics.measure import Measured

CHECK_SECONDS = 0.050
"""The incremental check's target at every size, on these engines (Spark has none)."""
CHECK_ENGINES = ("duckdb", "postgres", "clickhouse")
GROWTH = 2.0
"""The check's cost may grow less than this from 1M to 100M rows."""
FULL_RATIO = 20.0
"""The full statement against the Python baseline at 10M rows, on these engines."""
FULL_ENGINES = ("duckdb", "clickhouse")
FULL_ROWS = 10_000_000


def size(rows: int) -> str:
    return f"{rows / 1e6:g}M" if rows >= 1_000_000 else f"{rows / 1e3:g}k"


def targets(m: Measured) -> list[tuple[str, bool]]:
    """The targets that apply to the row, each with whether it was met."""
    found = []
    if m.engine in CHECK_ENGINES and m.check is not None:
        found.append((f"check < {CHECK_SECONDS * 1e3:g} ms", m.check.median < CHECK_SECONDS))
    if m.engine in FULL_ENGINES and m.rows == FULL_ROWS and m.full is not None and m.python is not None:
        found.append((f"full >= {FULL_RATIO:g}x Python", m.python / m.full.median >= FULL_RATIO))
    return found


def table(results: Sequence[Measured]) -> list[str]:
    header = (f"{'engine':<11}{'rows':>5}{'load s':>8}{'fold s':>8}{'check ms':>10}{'best':>10}{'runs':>5}"
              f"{'full s':>9}{'Python s':>10}{'Py/full':>9}{'Py/check':>10}  {'same ints':<10}{'result':<7}target")
    lines = [header, "-" * len(header)]
    for m in results:
        met = targets(m)
        ok = not m.problems and all(passed for _, passed in met)
        verdict = "PASS" if ok and met else ("FAIL" if not ok else "-")
        check = m.check
        full = f"{m.full.median:.3f}" if m.full else "-"
        python = f"{m.python:.2f}" if m.python is not None else "-"
        by_full = _ratio(m.python / m.full.median) if m.python is not None and m.full else "-"
        by_check = _ratio(m.python / check.median) if m.python is not None and check else "-"
        target = " and ".join(f"{name}{'' if passed else ' (missed)'}" for name, passed in met) or "-"
        lines.append(
            f"{m.engine:<11}{size(m.rows):>5}{m.load:>8.1f}{m.fold:>8.2f}"
            + (f"{check.median * 1e3:>10,.1f}{check.best * 1e3:>10,.1f}{check.runs:>5}" if check else f"{'-':>25}")
            + f"{full:>9}{python:>10}{by_full:>9}{by_check:>10}  {'NO' if m.problems else 'yes':<10}"
            f"{verdict:<7}{target}")
    return lines


def _ratio(times: float) -> str:
    return f"{times:,.0f}x" if times >= 100 else f"{times:.1f}x"


def growth(results: Sequence[Measured]) -> list[str]:
    """Per engine, the check's median at each size over its median at the smallest, and the growth target over
    the span measured (the target's span is 1M to 100M; only DuckDB is loaded with 100M rows)."""
    lines = []
    for engine in dict.fromkeys(m.engine for m in results):
        rows = sorted((m for m in results if m.engine == engine and m.check is not None), key=lambda m: m.rows)
        if len(rows) < 2:
            continue
        first = rows[0]
        assert first.check is not None
        ratios = []
        for m in rows[1:]:
            assert m.check is not None
            ratios.append((m, m.check.median / first.check.median))
        shown = ", ".join(f"{size(m.rows)} / {size(first.rows)} {ratio:.2f}x" for m, ratio in ratios)
        last, ratio = ratios[-1]
        verdict = ""
        if engine in CHECK_ENGINES:
            span = "" if last.rows >= 100_000_000 else f" (measured over {size(first.rows)} to {size(last.rows)} only)"
            verdict = f"; target < {GROWTH:g}x{span}: {'PASS' if ratio < GROWTH else 'FAIL'}"
        lines.append(f"  {engine}: check median {shown}{verdict}")
    return lines


def steps(results: Sequence[Measured]) -> list[str]:
    """Where each engine's check went at its largest size: each statement's median, and the rest (Python)."""
    lines = []
    for engine in dict.fromkeys(m.engine for m in results):
        m = max((m for m in results if m.engine == engine and m.steps), key=lambda m: m.rows, default=None)
        if m is not None:
            parts = ", ".join(f"{name} {seconds * 1e3:.1f}" for name, seconds in m.steps.items())
            lines.append(f"  {engine}, {size(m.rows)}: {parts} (ms)")
    return lines


def problems(results: Sequence[Measured]) -> list[str]:
    return [f"  {m.engine}, {size(m.rows)}: {problem}" for m in results for problem in m.problems]
