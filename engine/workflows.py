"""The registry of workflows: one line each (engine.workflow says what a workflow is).

The Engine runs any request or plan through it, and engine.script finds a recipe's script writer here.
"""

from __future__ import annotations

from engine import basic, chain, depth, sweep
from engine.workflow import Workflow

WORKFLOWS: dict[str, Workflow] = {
    workflow.name: workflow
    for workflow in (
        basic.WORKFLOW,
        sweep.WORKFLOW,
        chain.WORKFLOW,
        depth.WORKFLOW,
    )
}


def workflow_of(request_or_plan: object) -> Workflow:
    """The workflow a request or a plan belongs to.

    Raises:
        TypeError: neither a request nor a plan of a registered workflow.
    """
    for workflow in WORKFLOWS.values():
        if isinstance(request_or_plan, workflow.request | workflow.plan):
            return workflow
    raise TypeError(f"not a request or plan of any workflow: {type(request_or_plan).__name__}")
