"""One shape for every workflow: request -> validate -> plan -> run(plan, context) -> progress; one Stop."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from workflow_cases import CASES

from engine.pipelines.calls import GenerationCancelled
from engine.workflows.registry import WORKFLOWS, recipe_from_json, workflow_of
from engine.workflows.shape import stoppable
from engine.workflows.sweep import SweepRequest


def test_every_registered_workflow_has_its_sample_in_the_shared_table():
    """tests/workflow_cases.py feeds the fuzz and hardening tests: a workflow without a row there would go
    unfuzzed."""
    assert sorted(CASES) == sorted(WORKFLOWS)


def test_the_recipe_checks_take_the_registered_workflows_and_no_other(engine, photo):
    recipe = engine.img2img(CASES["img2img"].request(photo)).recipe
    data = json.loads(recipe.to_json())
    for name in WORKFLOWS:  # each name passes; a workflow's own fields may then be missing
        try:
            assert recipe_from_json(json.dumps({**data, "workflow": name})).workflow == name
        except ValueError as exc:
            assert "recipe field workflow" not in str(exc)
    names = ", ".join(sorted(WORKFLOWS))
    with pytest.raises(ValueError, match=f"recipe field workflow must be one of {names}, got 'not-a-workflow'"):
        recipe_from_json(json.dumps({**data, "workflow": "not-a-workflow"}))


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_workflow_plans_and_runs_through_the_one_engine_entry(engine, photo, name):
    request = CASES[name].request(photo)
    workflow = WORKFLOWS[name]
    assert workflow_of(request) is workflow
    plan = engine.plan(request)
    assert isinstance(plan, workflow.plan) and workflow_of(plan) is workflow
    states = list(engine.run(plan))
    assert states and getattr(states[-1], "stopped", None) is None
    assert CASES[name].recipe(states[-1]).workflow == name


def test_a_stranger_is_not_a_request():
    with pytest.raises(TypeError, match="not a request or plan of any workflow: dict"):
        workflow_of({"prompt": "a cat"})


def test_bad_input_is_refused_by_the_requests_own_validate(engine, photo):
    with pytest.raises(ValueError, match="x_axis must be one of"):
        engine.plan(SweepRequest(base=CASES["img2img"].request(photo), x_axis="colour", x_values="1"))


@dataclass
class Progress:
    done: int = 0
    stopped: str | None = None


def test_stop_ends_a_run_with_what_it_finished():
    progress = Progress()

    def steps():
        progress.done = 1
        yield progress
        raise GenerationCancelled("stopped by the user")

    states = list(stoppable(progress, steps()))
    assert len(states) == 2 and states[-1].done == 1
    assert states[-1].stopped == str(GenerationCancelled("stopped by the user"))


def test_other_errors_pass_through_stop():
    def steps():
        raise KeyError("broken")
        yield

    with pytest.raises(KeyError):
        list(stoppable(Progress(), steps()))
