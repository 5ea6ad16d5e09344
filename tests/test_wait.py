"""A long run says so in its plan: the time is estimated from the steps and pixels (the loops ZeroGPU sizing counts)
and this machine's measured speed (issue 35: a 2048x2048 upscale ran 14 minutes on a CPU with nothing said)."""

from __future__ import annotations

import pytest
from PIL import Image

from engine.base.settings import Settings
from engine.core import Engine
from engine.hosting import LONG_RUN_SECONDS, RunClock, loop_seconds
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest
from engine.workflows.shape import GpuWork


def test_the_clock_starts_from_its_prior_and_then_says_what_it_measured():
    work = [GpuWork("sd15", 10, 512 * 512), GpuWork("sd-x4-upscaler", 10, 2048 * 2048)]
    clock = RunClock(prior=25.0)
    seconds, measured = clock.estimate(work)
    assert not measured and seconds == pytest.approx(25.0 * sum(loop_seconds(loop) for loop in work))
    clock.observe(work, 90.0)
    assert clock.estimate(work) == (pytest.approx(90.0), True)  # the same work, as long as it took
    clock.observe(work, 30.0)
    assert clock.estimate(work)[0] == pytest.approx(60.0)  # the last two measurements, averaged
    other = [GpuWork("sdxl-refiner", 20, 1024 * 1024)]
    seconds, measured = clock.estimate(other)  # a model not timed yet: the speed the others ran at
    assert not measured and seconds == pytest.approx(60.0 / sum(map(loop_seconds, work)) * loop_seconds(other[0]))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """An engine no run has timed yet (the session's engine has run many)."""
    return Engine(Settings.from_env({}, models="tiny", data_dir=tmp_path_factory.mktemp("wait-data")))


def test_the_upscale_chain_on_a_photo_says_it_is_long_before_it_runs(fresh, tmp_path):
    photo = tmp_path / "coffee.png"
    Image.open(fresh.example_images()["coffee"]).resize((512, 341)).save(photo)
    plan = fresh.plan(ChainRequest(image=str(photo), preset="image-upscale-superres", prompt="a cup", seed=1))
    text = fresh.describe(plan)
    assert plan.describe() in text
    assert "⏳ A long run: about" in text and "on this cpu (a first guess, until a run here is timed)" in text


def test_a_short_run_says_nothing_and_a_finished_run_is_timed(fresh):
    from ui.basic import plan_text

    image = str(fresh.example_images()["chelsea the cat"])
    assert "⏳" not in plan_text(fresh, image, "sd15", 0.5, 4)
    long_text = plan_text(fresh, image, "sd15", 1.0, 150)
    assert "⏳ A long run: about" in long_text and "first guess" in long_text
    request = Img2ImgRequest(image=image, prompt="a cat", model="sd15", num_inference_steps=4, strength=0.5, seed=3)
    plan = fresh.plan(request)
    list(fresh.run(plan))
    seconds, measured = fresh.clock.estimate(fresh.gpu_work(plan))
    assert measured and 0 < seconds < LONG_RUN_SECONDS
