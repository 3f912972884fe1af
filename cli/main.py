"""`starter.py`: one CLI, conventional exits (0 ok, 1 runtime failure, 2 bad input or a policy refusal), `--help`
everywhere."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

import alert_receiver
from abrollout.contracts.records import DecisionState
from abrollout.contracts.report import Report
from abrollout.contracts.spec import Domain, ExperimentSpec
from abrollout.spec.problems import errors_only
from cli import commands, metrics_sql, reconcile, render
from cli.spec_input import load_checked_spec, refuse
from client.exits import OK, UserFacingError
from client.settings import add_connection_flags

EXIT_CODES = ("exit codes: 0 ok; 1 runtime failure (Temporal unreachable, no worker to register a started "
              "experiment, an experiment that failed or was terminated); 2 bad input or a policy refusal (the clause "
              "is printed), including an experiment refused at registration")
SCHEMAS: dict[str, Callable[[], dict[str, object]]] = {
    "spec": ExperimentSpec.model_json_schema,
    "report": Report.model_json_schema,
}


def cmd_validate(args: argparse.Namespace) -> int:
    if args.dialect and not args.sql:
        raise UserFacingError("error: --dialect chooses the dialect of --sql; fix: add --sql, or leave --dialect out")
    if args.sql and args.json:
        raise UserFacingError("error: --sql prints SQL, --json the plan as JSON; fix: give one of them")
    check = load_checked_spec(args.spec)
    if not check.ok or check.spec is None or check.plan is None:
        raise refuse(errors_only(check.problems) or check.problems, args.spec)
    spec, experiment_plan, power, warnings = check.spec, check.plan, check.power, check.problems
    warehouse = metrics_sql.configured(args.config)
    catalog = metrics_sql.checked_catalog(args, spec, warehouse)
    if args.sql:
        if warnings:  # stdout is the statement alone, ready to pipe
            print(render.warnings_block(warnings), file=sys.stderr)
        print(metrics_sql.statement(catalog, experiment_plan, args.dialect or warehouse.dialect,
                                    warehouse.prometheus))
        return OK
    if args.json:
        print(json.dumps({"spec": spec.model_dump(mode="json"), "plan": render.plan_json(experiment_plan),
                          "power": power.model_dump(mode="json") if power else None,
                          "metrics_catalog": str(catalog.file) if catalog.file else None,
                          "warnings": [str(w) for w in warnings]}, indent=2))
        return OK
    print(f"# {args.spec}: valid under {experiment_plan.policy_id}; experiment key '{experiment_plan.exp_key}' "
          f"(workflow id exp-{experiment_plan.exp_key}); metrics defined in {catalog.where}")
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
                                     "Temporal workflows with guardrails, receipts and instant rollback.",
                                     epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check a spec against exp_policy.v5 and print the plan",
                              description="Validate SPEC, check that every metric it names is defined in the "
                              "metrics catalog in use, print the normalised spec and the tool plan (or, with --sql, "
                              "the SQL a check runs). "
                              "Exit 2 with every problem listed when the spec is not valid.")
    validate.add_argument("spec", metavar="SPEC", help="path of a YAML or JSON spec")
    validate.add_argument("--json", action="store_true", help="print {spec, plan, power, metrics_catalog, "
                          "warnings} as JSON")
    metrics_sql.add_arguments(validate)
    validate.set_defaults(handler=cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of the spec or the report",
                            description="Print the JSON Schema of the input spec or the output report.")
    schema.add_argument("which", choices=sorted(SCHEMAS), help="which contract")
    schema.set_defaults(handler=cmd_schema)
    _temporal_commands(sub)
    return parser


def _temporal(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, handler: commands.Handler,
              help_text: str, takes_id: bool = True, description: str | None = None) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=description or help_text)
    if takes_id:
        parser.add_argument("id", metavar="ID", help="the workflow id exp-<name>, or the bare experiment name")
    add_connection_flags(parser)
    parser.set_defaults(handler=lambda args: commands.run(handler, args))
    return parser


def _tool_timeout(text: str) -> int:
    """1 to 3600 seconds, the bounds the workflow input holds: refused here, before anything starts."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if not 1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"{seconds} is out of range; fix: give 1 to 3600 seconds")
    return seconds


def _temporal_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _start_command(sub)
    _steering_commands(sub)
    _reading_commands(sub)
    _service_commands(sub)


def _start_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    start = _temporal(sub, "start", commands.cmd_start, "validate SPEC, start its experiment workflow and wait "
                      "until the experiment is registered", takes_id=False,
                      description="Validate SPEC, start its experiment workflow and wait until the registry has "
                      "registered it; print the workflow id, run id, exp id and UI link. A refusal at registration "
                      "(e.g. max_concurrent, concurrency.1) exits 2 with the clause and leaves nothing running. "
                      "Without a worker on the task queue it waits at most --tool-timeout plus "
                      f"{commands.REGISTRATION_MARGIN_SECONDS} s, then exits 1 saying so; the experiment stays "
                      "queued and goes on once a worker picks it up.")
    start.add_argument("spec", metavar="SPEC", help="path of a YAML or JSON spec")
    start.add_argument("--wait", action="store_true", help="follow the experiment until its decision")
    start.add_argument("--tool-timeout", type=_tool_timeout, default=60, metavar="SECONDS",
                       help="how long one tool call may run before Temporal retries it, possibly on another worker "
                       "(a crashed worker is noticed after this; default 60)")


def _steering_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that change a running experiment: each goes through the policy (manual.1-2, prereg.2-3)."""
    stop = _temporal(sub, "stop", commands.cmd_stop, "stop the run and roll back to control (manual.1)")
    stop.add_argument("--reason", required=True, help="why, recorded with the receipts")

    promote = _temporal(sub, "promote", commands.cmd_promote, "promote an arm (refused while a guardrail is "
                        "breached, manual.2)")
    promote.add_argument("--variant", required=True, help="the arm to promote")
    promote.add_argument("--reason", default="manual promote", help="why, recorded with the receipts")

    allocate = _temporal(sub, "allocate", commands.cmd_allocate, "ask for an exposure change: only the next "
                         "pre-registered ramp step is accepted (prereg.2, prereg.3)")
    allocate.add_argument("--split", help="a new split, e.g. control=70,treatment=30 (refused mid-run)")
    allocate.add_argument("--rule", action="append", help="a new exposure rule (refused mid-run); repeatable")
    allocate.add_argument("--ramp-step", type=int, help="apply this pre-registered ramp step now")
    allocate.add_argument("--reason", default="allocation change", help="why, recorded with the receipts")

    alert = _temporal(sub, "alert", commands.cmd_alert, "push an alert: run a guardrail check now")
    alert.add_argument("--reason", default="alert from the CLI", help="what fired")


def _reading_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that only read: queries, the result, the history, the visibility list."""
    _temporal(sub, "status", commands.cmd_status, "the decision state, the latest check and the receipts count")

    report = _temporal(sub, "report", commands.cmd_report, "the report (the output contract)")
    report.add_argument("--json", action="store_true", help="print exactly the output contract as JSON")
    report.add_argument("--open", action="store_true", help="open the latest dashboard snapshot")
    report.add_argument("--data-dir", help="the worker's data directory (env ABROLLOUT_DATA_DIR, default .abrollout)")

    listing = _temporal(sub, "list", commands.cmd_list, "experiments, by search attributes", takes_id=False,
                        description="Experiments, one row each. `state` is the decision state: "
                        "running, or the decision (promote, rollback, guardrail_stop, inconclusive); "
                        f"`{render.NO_DECISION}` means its workflow ended before deciding (status failed, e.g. "
                        "refused at registration; terminated; timed out; canceled): no guardrail watches it any "
                        "more, and a flag change it made stays as it was until the safety net's next sweep returns "
                        f"it to control (`{render.REPAIRED}`; `{render.NOT_REPAIRED}` if it could not: see "
                        "`status ID`). "
                        "`status` is Temporal's execution status of the workflow: running, completed, failed, "
                        "terminated, timed out or canceled.")
    listing.add_argument("--state", choices=[s.value for s in DecisionState],
                         help="ExperimentState to match; running lists only workflows that still run")
    listing.add_argument("--domain", choices=[d.value for d in Domain], help="ExperimentDomain to match")

    watch = _temporal(sub, "watch", commands.cmd_watch, "follow an experiment live until its decision")
    watch.add_argument("--quiet", action="store_true", help="do not print every ok CheckMetrics receipt")

    _temporal(sub, "history", commands.cmd_history, "the receipt trail from the workflow history, with event ids")


def _service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Long-running or operator commands: the alert receiver and a safety-net sweep."""
    receiver = _temporal(sub, "alert-receiver", alert_receiver.cmd_alert_receiver, alert_receiver.SUMMARY,
                         takes_id=False)  # also `python -m alert_receiver`: the same handler and arguments
    alert_receiver.add_arguments(receiver)

    sweep = _temporal(sub, "reconcile", reconcile.cmd_reconcile, "run one safety-net sweep now: every "
                          "registered experiment whose workflow was terminated, failed, timed out or is stuck gets "
                          "its flag returned to control, its registry slot released and a critical ticket (workers "
                          "also run this on a schedule)", takes_id=False)
    reconcile.add_arguments(sweep)


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
    except BrokenPipeError:  # e.g. `starter.py history ID | head -1`: the reader left, which is fine
        return OK  # exit_process drops what it did not read
