"""A broken deploy of the experiment workflow, for the safety-net tests: registered under the experiment's workflow
name, it issues none of the experiment's commands (a change shipped without `workflow.patched`), so replaying a
running experiment is nondeterministic from its first event on. Its own module with no imports but Temporal's, since
the workflow sandbox re-imports the module a workflow is defined in."""

from typing import Any

from temporalio import workflow


@workflow.defn(name="ExperimentWorkflow")
class BrokenDeploy:
    @workflow.run
    async def run(self, _: dict[str, Any]) -> None:
        await workflow.wait_condition(lambda: False)
