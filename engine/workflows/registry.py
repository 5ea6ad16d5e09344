"""The registry of workflows: one line each (engine.workflows.shape says what a workflow is).

The Engine runs any request or plan through it, and it is the one entry point for what depends on a recipe's
workflow: reading a recipe (each workflow checks its own fields), its script, whether that script reads an
init image and what other files.
"""

from __future__ import annotations

from pathlib import Path

from engine.recipes.recipe import Recipe
from engine.recipes.recipe import read_recipe as read_recipe_with
from engine.workflows import basic, chain, depth, edit, inpaint, sweep
from engine.workflows.shape import Workflow

WORKFLOWS: dict[str, Workflow] = {
    workflow.name: workflow
    for workflow in (
        basic.WORKFLOW,
        sweep.WORKFLOW,
        chain.WORKFLOW,
        depth.WORKFLOW,
        inpaint.WORKFLOW,
        edit.WORKFLOW,
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


def _shapes():
    return {name: workflow.recipe for name, workflow in WORKFLOWS.items()}


def read_recipe(source: str | Path | bytes) -> Recipe:
    """The recipe a PNG from the app carries, every field checked, the workflow's own by the workflow.

    Raises:
        ValueError: not a PNG, no recipe in it, or a field that is not what the app writes (named, with its value).
    """
    return read_recipe_with(source, _shapes())


def recipe_from_json(text: str) -> Recipe:
    """A recipe from its JSON text (Recipe.to_json), every field checked as `read_recipe` checks it."""
    return Recipe.from_json(text, _shapes())


def script_for(recipe: Recipe) -> str:
    """The script for a recipe's image, written by its workflow.

    Raises:
        ValueError: a workflow with no script (yet), or a recipe its writer cannot replay.
    """
    workflow = WORKFLOWS.get(recipe.workflow)
    if workflow is None:
        raise ValueError(f"no script export for workflow {recipe.workflow!r}")
    return workflow.script(recipe)


def reads_files(recipe: Recipe) -> tuple[str, ...]:
    """The files the recipe's script reads after the init, by their download names (a mask.png)."""
    workflow = WORKFLOWS.get(recipe.workflow)
    return () if workflow is None else workflow.reads_files(recipe)


def reads_init(recipe: Recipe) -> bool:
    """Whether the recipe's script reads an init image (what a download must carry beside it)."""
    workflow = WORKFLOWS.get(recipe.workflow)
    return workflow is None or workflow.reads_init(recipe)
