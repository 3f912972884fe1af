"""`starter.py`: one CLI, conventional exits (0 ok, 1 runtime failure, 2 bad input), `--help` everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from abrollout.contracts.report import Report
from abrollout.contracts.spec import ExperimentSpec
from abrollout.planner import plan
from abrollout.problems import errors_only
from abrollout.stats.planning import power_plan, power_warnings
from cli import render
from cli.exits import OK, UserFacingError
from cli.spec_input import load_checked_spec, refuse

SCHEMAS: dict[str, Callable[[], dict[str, object]]] = {
    "spec": ExperimentSpec.model_json_schema,
    "report": Report.model_json_schema,
}


def cmd_validate(args: argparse.Namespace) -> int:
    check = load_checked_spec(args.spec)
    if not check.ok or check.spec is None:
        raise refuse(errors_only(check.problems) or check.problems, args.spec)
    spec = check.spec
    experiment_plan = plan(spec)
    power = power_plan(spec, experiment_plan)
    warnings = [*check.problems, *power_warnings(spec, experiment_plan, power)]
    if args.json:
        print(json.dumps({"spec": spec.model_dump(mode="json"), "plan": render.plan_json(experiment_plan),
                          "power": power.model_dump(mode="json") if power else None,
                          "warnings": [str(w) for w in warnings]}, indent=2))
        return OK
    print(f"# {args.spec}: valid under {experiment_plan.policy_id}; experiment key '{experiment_plan.exp_key}' "
          f"(workflow id exp-{experiment_plan.exp_key})")
    print(render.spec_yaml(spec), end="")
    print()
    print(render.schedule_line(experiment_plan))
    if power is not None:
        print(render.power_line(power))
    print(render.plan_table(experiment_plan))
    if warnings:
        print("\nwarnings:")
        print(render.warnings_block(warnings))
    return OK


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(SCHEMAS[args.which](), indent=2))
    return OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="starter.py", description="abrollout: run A/B experiments as durable "
                                     "Temporal workflows with guardrails, receipts and instant rollback.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check a spec against exp_policy.v5 and print the plan",
                              description="Validate SPEC, print the normalised spec and the tool plan. "
                              "Exit 2 with every problem listed when the spec is not valid.")
    validate.add_argument("spec", metavar="SPEC", help="path of a YAML or JSON spec")
    validate.add_argument("--json", action="store_true", help="print {spec, plan, warnings} as JSON")
    validate.set_defaults(handler=cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of the spec or the report",
                            description="Print the JSON Schema of the input spec or the output report.")
    schema.add_argument("which", choices=sorted(SCHEMAS), help="which contract")
    schema.set_defaults(handler=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except UserFacingError as exc:
        print(exc.message, file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
