"""Fuzz: any value in any parameter of any workflow, and any recipe JSON, gets a ValueError that names
what is wrong, or is accepted; never another exception, never code in a script (issue 14)."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_hardening import code_shape
from workflow_cases import CASES

from engine.workflows.basic import Img2ImgRequest
from engine.workflows.registry import recipe_from_json, script_for

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(
        [
            "",
            "sd15",
            "(" * 40 + "x",
            "a \ud800 b",
            "1-" + "9" * 400,
            "<img src=x onerror=alert(1)>",
            "[" * 2000,
            "../../etc/passwd",
            "float32; import os",
        ]
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
IMAGE = Image.new("RGB", (64, 64))


def _validate(engine, request) -> None:
    engine.plan(request)  # every workflow's request has one validate (engine.workflows.shape)


@pytest.mark.parametrize("workflow", sorted(CASES))
def test_any_value_in_any_field_is_accepted_or_named(engine, workflow):
    request = CASES[workflow].request(IMAGE)
    names = [f.name for f in fields(request) if f.name not in ("image", "base", "depth_map")]

    @FUZZ
    @given(name=st.sampled_from(names), value=json_values)
    def check(name, value):
        try:
            _validate(engine, replace(request, **{name: value}))
        except ValueError as error:
            assert str(error).strip() and len(str(error)) < 2000, str(error)

    check()


def _recipe_json(engine) -> dict:
    result = engine.img2img(Img2ImgRequest(image=IMAGE, prompt="a cat", num_inference_steps=2, strength=1.0, seed=1))
    return result.recipe.as_dict()


def test_any_recipe_json_is_refused_or_makes_the_same_code(engine):
    genuine = _recipe_json(engine)
    shape = code_shape(script_for(recipe_from_json(json.dumps(genuine))))
    keys = sorted(genuine)

    @FUZZ
    @given(key=st.sampled_from(keys), inner=st.text(max_size=12), value=json_values)
    def check(key, inner, value):
        crafted = json.loads(json.dumps(genuine))
        if isinstance(crafted[key], dict) and inner:
            crafted[key][inner] = value
        else:
            crafted[key] = value
        try:
            text = json.dumps(crafted)
        except ValueError:
            return  # not expressible as JSON (a float of inf is, an int of 400 digits is)
        try:
            recipe = recipe_from_json(text)
        except ValueError as error:
            assert str(error).startswith(("recipe field", "recipe is", "recipe must")), str(error)
            return
        try:
            script = script_for(recipe)
        except ValueError:
            return  # no script for this combination: said in words, nothing to run
        same_branches = recipe.weighted_prompt == genuine["weighted_prompt"] and recipe.extra.get(
            "pipeline_calls", 1
        ) == genuine["extra"].get("pipeline_calls", 1)
        if same_branches and "scheduler_name" not in recipe.extra:
            assert code_shape(script) == shape

    check()


@FUZZ
@given(
    text=st.text(max_size=300)
    | st.lists(st.sampled_from(["a", ":", ",", '"', "\\", " ", "\n", "Steps", "7"]), max_size=400).map("".join)
)
def test_any_infotext_parses_or_is_named(text):
    from engine.recipes.recipe import parse_infotext

    try:
        parsed = parse_infotext(text)
    except ValueError as error:
        assert str(error).startswith(("infotext is empty", "infotext field")), str(error)
        return
    assert isinstance(parsed["prompt"], str) and isinstance(parsed["negative_prompt"], str)
