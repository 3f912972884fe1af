"""The metrics catalog as a file people write (`metrics.yaml`): reading it into a Catalog, and which file applies.

The file is read as safely as a spec (size, nesting, duplicate keys and aliases bounded by the spec loader's
`parse_text`) and checked by abrollout/warehouse/checks.py, so every problem names its field path and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from abrollout.spec.loader import SpecSyntaxError, parse_text
from abrollout.spec.problems import Problem
from abrollout.warehouse.catalog import BUILT_IN, Catalog
from abrollout.warehouse.checks import check_catalog
from adapters.protocols import AdapterConfigError

METRICS_FILE = "metrics.yaml"
"""The catalog a spec beside it is checked with, unless another is given."""
_SHAPE = "write the catalog as a YAML mapping with dialect:, exposures: and metrics: (see examples/metrics.yaml)"


class CatalogFileError(AdapterConfigError):
    """A catalog file that cannot be used: every problem, each with its field path and fix."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        self.path, self.problems = path, problems
        lines = [f"metrics catalog {path}: {len(problems)} problem(s)", *(f"  {p}" for p in problems)]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class CatalogChoice:
    """The catalog in use and where it came from (`file` None: the built-in one)."""

    catalog: Catalog
    file: Path | None

    @property
    def where(self) -> str:
        return str(self.file) if self.file is not None else "the built-in catalog"


def load_catalog(path: Path) -> Catalog:
    """The catalog in the file at `path`; CatalogFileError lists every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogFileError(path, [Problem(path="", found="the file does not exist",
                                              fix="give the path of a metrics catalog (see examples/metrics.yaml)")]
                               ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogFileError(path, [Problem(path="", found=f"cannot be read as UTF-8 text ({type(exc).__name__})",
                                              fix="check the file's permissions, and save it as UTF-8")]) from None
    try:
        raw = parse_text(text, str(path))
    except SpecSyntaxError as exc:
        raise CatalogFileError(path, [Problem(path="", found=str(exc), fix=_SHAPE)]) from None
    check = check_catalog(raw)
    if check.catalog is None:
        raise CatalogFileError(path, check.problems)
    return check.catalog


def choose_catalog(given: str | None, spec: Path | None = None, configured: str | None = None) -> CatalogChoice:
    """The catalog a spec is checked with: the file `given` (--metrics), else `metrics.yaml` beside the spec, else
    the `configured` one ([warehouse] metrics), else the built-in catalog (every metric a label of the embedded
    schema)."""
    beside = spec.parent / METRICS_FILE if spec is not None else None
    if given:
        path: Path | None = Path(given)
    elif beside is not None and beside.is_file():
        path = beside
    else:
        path = Path(configured) if configured else None
    return CatalogChoice(BUILT_IN, None) if path is None else CatalogChoice(load_catalog(path), path)
