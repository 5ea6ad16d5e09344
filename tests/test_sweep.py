"""Sweeps: parsing, planning before any work, batched cells equal to the Basic path, Stop, shared work."""

import numpy as np
import pytest

from engine.pipelines.calls import CancelToken
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.sweep import SweepRequest, parse_values, plan_sweep


@pytest.mark.parametrize(
    ("axis", "text", "expected"),
    [
        ("strength", "0.3, 0.5,0.8", [0.3, 0.5, 0.8]),
        ("strength", "  0.3 ,\n 0.5  ", [0.3, 0.5]),
        ("strength", "0.2-1.0 (+0.2)", [0.2, 0.4, 0.6, 0.8, 1.0]),
        ("strength", "0.2 - 1.0 [5]", [0.2, 0.4, 0.6, 0.8, 1.0]),
        ("guidance_scale", "12-3 (-3)", [12.0, 9.0, 6.0, 3.0]),
        ("seed", "1-4", [1, 2, 3, 4]),
        ("num_inference_steps", "10, 25.0", [10, 25]),
        ("prompt", "a cat\n\n a dog \n", ["a cat", "a dog"]),
        ("negative_prompt", "(none)\nblurry", ["", "blurry"]),
        ("scheduler", "Euler, DDIM", ["Euler", "DDIM"]),
        ("lora_weight", "-1-1 [5]", [-1.0, -0.5, 0.0, 0.5, 1.0]),  # a LoRA inverted to applied
        ("lora_weight", "-2 - -1 (+0.5)", [-2.0, -1.5, -1.0]),
    ],
)
def test_parse_values(axis, text, expected):
    assert (
        parse_values(axis, text) == pytest.approx(expected)
        if axis in ("strength", "guidance_scale")
        else (parse_values(axis, text) == expected)
    )


@pytest.mark.parametrize(
    ("axis", "text", "message"),
    [
        ("strength", "", "x_values for axis 'strength' is empty"),
        ("strength", "0.3, abc", "x_values for axis 'strength': 'abc' is not a number"),
        ("strength", "0.2-1.0", "a range of decimals needs a step or a count"),
        ("strength", "0.2-1.0 (+0)", "step 0 never gets from 0.2 to 1"),
        ("strength", "0.2-1.0 (-0.1)", "step -0.1 never gets from 0.2 to 1"),
        ("seed", "1.5, 2", "1.5 is not a whole number"),
        ("seed", "1-1000", "gives 1000 values; at most 64"),
        ("strength", "nan", "is not a finite number"),
        ("color", "red", "axis must be one of strength"),
    ],
)
def test_bad_syntax_names_the_axis(axis, text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        parse_values(axis, text, name="x_values")


def sweep_request(photo, model="sd15", **axes):
    base = Img2ImgRequest(
        image=photo,
        prompt="a cat",
        model=model,
        negative_prompt="blurry",
        strength=0.6,
        num_inference_steps=5,
        seed=11,
    )
    return SweepRequest(base=base, **axes)


def test_cell_values_are_validated_before_any_work(settings, photo):
    with pytest.raises(ValueError, match=r"cell strength='1.5': strength must be in \(0, 1\], got 1.5"):
        plan_sweep(sweep_request(photo, x_axis="strength", x_values="0.5, 1.5"), settings)
    with pytest.raises(ValueError, match="the sweep has 10 x 10 = 100 cells; the limit is 64"):
        plan_sweep(
            sweep_request(photo, x_axis="strength", x_values="0.1-1.0 [10]", y_axis="seed", y_values="1-10"), settings
        )
    with pytest.raises(ValueError, match="x_axis and y_axis are both 'seed'"):
        plan_sweep(sweep_request(photo, x_axis="seed", x_values="1", y_axis="seed", y_values="2"), settings)
    with pytest.raises(ValueError, match="mixes model families"):
        plan_sweep(sweep_request(photo, x_axis="model", x_values="sd15\nkandinsky22"), settings)
    with pytest.raises(ValueError, match="scheduler 'Foo' does not fit model 'sd15'; choose from DDIM"):
        plan_sweep(sweep_request(photo, x_axis="scheduler", x_values="Foo"), settings)


def test_grid_pixel_cap_refuses_before_work(settings, photo):
    from dataclasses import replace

    small = replace(settings, max_grid_pixels=50_000)
    with pytest.raises(ValueError, match=r"the grid would be \d+x\d+ = [\d,]+ pixels, over the limit of 50,000"):
        plan_sweep(sweep_request(photo, x_axis="seed", x_values="1-4"), small)


def test_plan_groups_batchable_cells(settings, photo):
    plan = plan_sweep(
        sweep_request(photo, x_axis="guidance_scale", x_values="1, 4, 7.5", y_axis="strength", y_values="0.4, 0.8"),
        settings,
    )
    assert len(plan.cells) == 6 and plan.calls == ((0, 1, 2), (3, 4, 5))
    assert [c.plan.guidance_scale for c in plan.cells] == [1.0, 4.0, 7.5] * 2
    assert [(c.row, c.col) for c in plan.cells] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert plan.total_steps == 3 * (2 + 1) + 3 * (4 + 1)  # int(5 x strength), and PNDM repeats a step
    assert "6** cells in **2** pipeline call(s)" in plan.describe()


def basic_image(engine, photo, cell, model):
    return engine.img2img(
        Img2ImgRequest(
            image=photo,
            prompt=cell.plan.prompt,
            model=model,
            negative_prompt=cell.plan.negative_prompt,
            strength=cell.plan.strength,
            guidance_scale=cell.plan.guidance_scale,
            num_inference_steps=cell.plan.num_inference_steps,
            seed=cell.plan.seeds[0],
        )
    ).images[0]


@pytest.mark.parametrize("model", ["sd15", "sdxl-refiner", "sdxl-base"])
@pytest.mark.parametrize(
    ("x", "y"),
    [
        # guidance 0 and 1 switch diffusers' CFG off: those cells must still match their Basic run
        (("guidance_scale", "0, 1, 3.5, 7.5"), ("seed", "11, 12")),
        (("prompt", "a cat\na (wizard) cat"), ("negative_prompt", "(none)\nblurry, lowres")),
    ],
)
def test_each_batched_cell_equals_the_basic_path(engine, photo, model, x, y):
    plan = engine.plan(sweep_request(photo, model=model, x_axis=x[0], x_values=x[1], y_axis=y[0], y_values=y[1]))
    assert len(plan.calls) == 1, "these cells differ only along batched axes"
    *_, final = engine.sweep(plan)
    assert final.finished and final.stopped is None
    for cell in plan.cells:
        ours = np.asarray(final.images[cell.index], dtype=np.int16)
        theirs = np.asarray(basic_image(engine, photo, cell, model), dtype=np.int16)
        assert np.abs(ours - theirs).max() <= 2, f"cell {cell.caption} differs from its Basic run"
    first, second, third = (np.asarray(final.images[i], dtype=np.int16) for i in (0, 1, 2))
    assert np.abs(first - third).max() > 2, "different cells should differ"
    if x[0] == "guidance_scale":  # diffusers runs no CFG at 0 or 1: both give the conditional prediction
        assert np.array_equal(first, second)


def test_a_vae_with_latent_statistics_normalises_as_diffusers_does(engine, photo):
    """SDXL-family VAEs may publish latents_mean/latents_std; diffusers' img2img then normalises the init
    latents with them. The batched cells draw their own init latents (engine.pipelines.portable.sample_latents), so
    they must do the same to equal the Basic path."""
    vae = engine.cache.get("sdxl-refiner").vae
    channels = vae.config.latent_channels
    vae.register_to_config(latents_mean=[0.3] * channels, latents_std=[2.5] * channels)
    try:
        plan = engine.plan(sweep_request(photo, model="sdxl-refiner", x_axis="guidance_scale", x_values="3, 7"))
        *_, final = engine.sweep(plan)
        for cell in plan.cells:
            ours = np.asarray(final.images[cell.index], dtype=np.int16)
            theirs = np.asarray(basic_image(engine, photo, cell, "sdxl-refiner"), dtype=np.int16)
            assert np.abs(ours - theirs).max() <= 2, f"cell {cell.caption} differs from its Basic run"
    finally:
        vae.register_to_config(latents_mean=None, latents_std=None)


def test_strength_and_steps_cells_run_as_separate_calls(engine, photo):
    plan = engine.plan(
        sweep_request(photo, x_axis="strength", x_values="0.4, 0.8", y_axis="num_inference_steps", y_values="4, 6")
    )
    assert len(plan.calls) == 4
    *_, final = engine.sweep(plan)
    for cell in plan.cells:
        ours = np.asarray(final.images[cell.index], dtype=np.int16)
        assert np.abs(ours - np.asarray(basic_image(engine, photo, cell, "sd15"), dtype=np.int16)).max() <= 2


def test_shared_work_is_done_once(engine, photo):
    pipe = engine.cache.get("sd15")
    calls = {"vae_encoder": 0, "text_encoder": 0}

    def count(name):
        def hook(module, args, output):
            calls[name] += 1

        return hook

    handles = [
        pipe.vae.encoder.register_forward_hook(count("vae_encoder")),
        pipe.text_encoder.register_forward_hook(count("text_encoder")),
    ]
    try:
        plan = engine.plan(sweep_request(photo, x_axis="seed", x_values="1-3", y_axis="strength", y_values="0.5, 0.9"))
        list(engine.sweep(plan))
    finally:
        for handle in handles:
            handle.remove()
    assert calls["vae_encoder"] == 1
    assert calls["text_encoder"] == 2  # the prompt and the negative prompt, once each for six cells


def test_scheduler_axis_swaps_and_restores(engine, photo):
    pipe = engine.cache.get("sd15")
    original = pipe.scheduler
    plan = engine.plan(sweep_request(photo, x_axis="scheduler", x_values="PNDM\nEuler\nDPM++ 2M"))
    *_, final = engine.sweep(plan)
    assert pipe.scheduler is original
    images = [np.asarray(im, dtype=np.int16) for im in final.images]
    assert np.abs(images[0] - images[1]).max() > 2 and np.abs(images[1] - images[2]).max() > 2
    assert [row["scheduler"] for row in final.table()] == ["PLMS", "Euler", "DPM++ 2M"]


def test_model_axis_runs_each_model(engine, photo):
    plan = engine.plan(sweep_request(photo, x_axis="model", x_values="sd15\ncomic-diffusion"))
    *_, final = engine.sweep(plan)
    assert [row["model"] for row in final.table()] == ["sd15", "comic-diffusion"]
    for cell in plan.cells:
        ours = np.asarray(final.images[cell.index], dtype=np.int16)
        theirs = basic_image(engine, photo, cell, cell.plan.spec.key)
        assert np.abs(ours - np.asarray(theirs, dtype=np.int16)).max() <= 2


def test_kandinsky_sweep_matches_basic(engine, photo):
    plan = engine.plan(sweep_request(photo, model="kandinsky22", x_axis="guidance_scale", x_values="2, 6"))
    *_, final = engine.sweep(plan)
    for cell in plan.cells:
        ours = np.asarray(final.images[cell.index], dtype=np.int16)
        theirs = basic_image(engine, photo, cell, "kandinsky22")
        assert np.array_equal(ours, np.asarray(theirs, dtype=np.int16))


def test_stop_keeps_the_finished_cells(engine, photo):
    token = CancelToken()
    plan = engine.plan(sweep_request(photo, x_axis="strength", x_values="0.4, 0.6, 0.8"))
    states = []
    for state in engine.sweep(plan, cancel=token):
        states.append(state)
        if state.done_calls == 1:
            token.cancel()
    final = states[-1]
    assert final.stopped and "stopped by the user" in final.stopped
    assert final.images[0] is not None and final.images[1] is None and final.images[2] is None
    assert [row["index"] for row in final.table()] == [0]
    assert final.grid().size == plan.grid_size
    # the next sweep runs
    token.reset()
    *_, again = engine.sweep(plan, cancel=token)
    assert again.finished and all(im is not None for im in again.images)


def test_cells_appear_as_they_finish(engine, photo):
    plan = engine.plan(sweep_request(photo, x_axis="num_inference_steps", x_values="3, 4, 5"))
    done = [len(state.done_cells) for state in engine.sweep(plan)]
    assert done == [1, 2, 3]


def test_table_has_every_parameter_and_seed(engine, photo):
    plan = engine.plan(sweep_request(photo, x_axis="seed", x_values="5, 6"))
    *_, final = engine.sweep(plan)
    rows = final.table()
    assert [r["seed"] for r in rows] == [5, 6]
    assert set(rows[0]) >= {"prompt", "negative_prompt", "strength", "guidance_scale", "num_inference_steps", "model"}


def test_prompt_axis_needs_no_base_prompt(settings, photo):
    from dataclasses import replace

    sweep = sweep_request(photo, x_axis="prompt", x_values="a cat\na dog")
    plan = plan_sweep(replace(sweep, base=replace(sweep.base, prompt="")), settings)
    assert [c.plan.prompt for c in plan.cells] == ["a cat", "a dog"]


def test_a_long_non_number_is_quoted_shortened(settings, photo):
    """Found by the fuzz test: a 3,000-character item used to be quoted whole in the error."""
    with pytest.raises(ValueError, match=r"x_values for axis 'seed': '\[{79}… is not a number") as caught:
        plan_sweep(sweep_request(photo, x_axis="seed", x_values="[" * 3000), settings)
    assert len(str(caught.value)) < 200
