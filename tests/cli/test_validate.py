"""`starter.py validate` and `schema` as a person runs them: exit codes, field-named messages, no tracebacks; and
`start`, which refuses exactly what `validate` refuses."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from abrollout.spec.loader import validate_raw
from cli.spec_input import ask_once, read_spec_file
from client.exits import UserFacingError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != "metrics.yaml")  # metrics: a catalog
BAD_SPECS = sorted(p for p in (ROOT / "tests" / "bad_specs").iterdir() if p.suffix in {".yaml", ".json"})
UNREACHABLE = "127.0.0.1:1"


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "starter.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, input=stdin, timeout=60)


def validate_and_start(spec: Path) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """`validate SPEC` and `start SPEC` against an address where nothing listens, run side by side."""
    commands = (["validate", str(spec)], ["start", str(spec), "--address", UNREACHABLE])
    running = [subprocess.Popen([sys.executable, str(ROOT / "starter.py"), *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
               for args in commands]
    done = []
    for args, process in zip(commands, running, strict=True):
        out, err = process.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done[0], done[1]


def expectations(path: Path) -> list[str]:
    if path.suffix == ".json":
        return [path.with_suffix(".expect").read_text().strip()]
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: a | b'"
    return [part.strip() for part in first.removeprefix("# expect: ").split("|")]


def test_every_domain_has_a_valid_example() -> None:
    domains = {json.loads(run_cli("validate", "--json", str(p)).stdout)["spec"]["domain"] for p in EXAMPLES}
    assert domains == {"prompts", "policies", "ranking", "pricing", "ui"}


@pytest.mark.parametrize("spec", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate(spec: Path) -> None:
    result = run_cli("validate", str(spec))
    assert result.returncode == 0, result.stderr
    assert "valid under exp_policy.v5" in result.stdout
    assert "allocate-0" in result.stdout


@pytest.mark.parametrize("spec", BAD_SPECS, ids=[p.name for p in BAD_SPECS])
def test_bad_specs_exit_2_naming_the_field_in_validate_and_start(spec: Path) -> None:
    """`start` refuses exactly what `validate` refuses, in the same words, and starts nothing: it never gets as
    far as connecting (that would be exit 1, as nothing listens on the address)."""
    result, started = validate_and_start(spec)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    for expected in expectations(spec):
        assert expected in result.stderr, f"{expected!r} not in:\n{result.stderr}"
    assert (started.returncode, started.stdout, started.stderr) == (2, "", result.stderr)


def test_a_valid_spec_gets_as_far_as_connecting() -> None:
    validated, started = validate_and_start(ROOT / "examples" / "ui-checkout-button.yaml")
    assert validated.returncode == 0, validated.stderr
    assert started.returncode == 1, (started.stdout, started.stderr)
    assert f"cannot reach Temporal at {UNREACHABLE}" in started.stderr
    assert "Traceback" not in started.stderr and "started" not in started.stdout


def test_validate_json_is_the_normalised_spec_and_plan() -> None:
    result = run_cli("validate", "--json", str(ROOT / "examples" / "ui-checkout-button.yaml"))
    body = json.loads(result.stdout)
    assert body["spec"]["allocation"]["split"] == {"control": 50.0, "green_cta": 50.0}
    assert next(s["step"] for s in body["plan"]["setup"]) == "register"
    assert len(body["plan"]["ramp_steps"]) == 2


def test_missing_file_is_a_clear_error() -> None:
    result = run_cli("validate", "no/such/spec.yaml")
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_an_answer_yaml_cannot_build_is_kept_as_text_for_the_check_to_refuse() -> None:
    completed = ask_once({"domain": "ui"}, ["max_duration_days"], lambda _: "2026-13-45", io.StringIO())
    assert completed["max_duration_days"] == "2026-13-45"
    assert "max_duration_days" in {p.path for p in validate_raw(completed).problems}


def test_missing_critical_fields_without_a_tty_are_listed_not_asked() -> None:
    result = run_cli("validate", str(ROOT / "tests" / "bad_specs" / "missing-critical.yaml"), stdin="")
    assert result.returncode == 2
    assert "treatment_spec: missing" in result.stderr and "mde: missing" in result.stderr


@pytest.mark.parametrize("which", ["spec", "report"])
def test_schema_prints_json_schema(which: str) -> None:
    result = run_cli("schema", which)
    assert result.returncode == 0
    assert json.loads(result.stdout)["type"] == "object"


def test_usage_errors_exit_2() -> None:
    assert run_cli("schema", "nope").returncode == 2
    assert run_cli().returncode == 2


def test_an_unreadable_spec_file_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("domain: ui\n")

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(UserFacingError) as caught:
        read_spec_file(str(spec))
    assert caught.value.code == 2 and caught.value.message.count("\n") == 0
    assert "cannot read" in caught.value.message and "Permission denied" in caught.value.message
