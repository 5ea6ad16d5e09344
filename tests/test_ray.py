"""The Ray Serve backend (engine.scale_out) on a local Ray instance: 2 CPU replicas of the tiny engine.

Each replica has one CPU, so Ray gives it one torch thread; a CPU's float results depend on the thread
count, so the local runs compared against are made with one torch thread too (on a GPU nothing changes).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import ray
from pixels import assert_same_pixels, one_thread
from workflow_cases import INPAINT_STAGES, middle_mask

from engine import scale_out
from engine.core import Engine
from engine.pipelines.calls import CancelToken, GenerationCancelled
from engine.workflows.basic import Img2ImgRequest
from engine.workflows.chain import ChainRequest
from engine.workflows.depth import DepthRequest
from engine.workflows.edit import EditRequest
from engine.workflows.inpaint import InpaintRequest
from engine.workflows.sweep import SweepRequest

STEPS = 4


@pytest.fixture(scope="module")
def engine(settings):
    """A fresh local engine to compare with: the session's has remembered depth maps and pipelines that other
    tests changed (made with two torch threads, or retried with VAE tiling)."""
    return Engine(settings)


@pytest.fixture(scope="module")
def backend(settings):
    """A front-end engine whose GPU work runs on 2 Serve replicas of a local Ray instance."""
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, runtime_env=scale_out.runtime_env(), logging_level="WARNING")
    try:
        front = Engine(replace(settings, replicas=2))
        calls = scale_out.start(front)
        yield front, calls
    finally:
        serve.shutdown()
        ray.shutdown()


def local_run(engine, plan) -> list:
    with one_thread():
        return list(engine.run(plan))


def kill(name: str) -> None:
    ray.kill(ray.get_actor(name, namespace="serve"))


def sweep_request(photo, steps: int = STEPS) -> SweepRequest:
    """Four batched calls (one per strength), two seeds each: four parts to fan out."""
    return SweepRequest(
        base=Img2ImgRequest(image=photo, prompt="a cat", num_inference_steps=steps, seed=5),
        x_axis="strength",
        x_values="0.4, 0.6, 0.8, 1.0",
        y_axis="seed",
        y_values="1, 2",
    )


def test_the_front_end_waits_for_as_many_jobs_as_there_are_replicas(backend):
    import ui

    front, calls = backend
    assert front.gpu_concurrency == calls.concurrency == 2
    app = ui.build_app(front)
    assert {fn.concurrency_limit for fn in app.fns.values() if fn.concurrency_id == "gpu"} == {2}
    assert "on each of 2 Ray Serve replica(s)" in front.banner


def test_every_workflow_equals_the_local_backend(engine, backend, photo):
    front, _ = backend
    (edited,) = engine.run(EditRequest(image=photo, prompt="make it night", num_inference_steps=STEPS, seed=8))
    requests = [
        Img2ImgRequest(image=photo, prompt="a cat wizard", num_inference_steps=STEPS, seed=3, num_images=2),
        ChainRequest(image=photo, preset="image-image-image", prompt="a cat", seed=7),
        DepthRequest(image=photo, prompt="a cat", num_inference_steps=STEPS, seed=2),
        InpaintRequest(image=photo, mask=middle_mask(photo), prompt="a dog", num_inference_steps=STEPS, seed=4),
        ChainRequest(image=photo, preset="", stages=INPAINT_STAGES, seed=6, mask=middle_mask(photo)),
        # an edit continuing an earlier one: the previous result's recipe and images cross to the GPU too
        EditRequest(
            image=edited.images[0], prompt="add snow", num_inference_steps=STEPS, seed=9, previous=edited.previous(0)
        ),
        SweepRequest(  # inpaint cells, one call each: parts on both replicas
            base=InpaintRequest(image=photo, mask=middle_mask(photo), prompt="a dog", num_inference_steps=STEPS),
            x_axis="mask_blur",
            x_values="0, 8",
        ),
        sweep_request(photo),
    ]
    for request in requests:
        plan = engine.plan(request)
        local = local_run(engine, plan)
        steps: list[tuple[int, int]] = []
        remote = list(front.run(plan, progress=lambda done, total, steps=steps: steps.append((done, total))))
        # as many updates as here (a stage, a cell batch, an image each); the last one the same pixels
        assert len(remote) == len(local), type(request).__name__
        assert_same_pixels(local[-1], remote[-1])
        assert steps and steps[-1][0] == steps[-1][1], f"{type(request).__name__}: the bar ends full: {steps[-3:]}"
    # the sweep came back in order, one call at a time, its recipes the local ones
    plan = engine.plan(requests[-1])
    with one_thread():
        sweep_local = [(p.done_calls, len(p.done_cells)) for p in engine.run(plan)]
    sweep_remote = [(p.done_calls, len(p.done_cells)) for p in front.run(plan)]
    assert sweep_remote == sweep_local == [(1, 2), (2, 4), (3, 6), (4, 8)]
    assert [r.to_json() for r in remote[-1].recipes] == [r.to_json() for r in local[-1].recipes]


def test_a_sweeps_calls_fan_out_across_both_replicas(engine, backend, photo):
    front, calls = backend
    before = calls.served.copy()
    list(front.run(engine.plan(sweep_request(photo, steps=20))))
    used = calls.served - before
    assert sum(used.values()) == 4 and len(used) == 2, used


def test_a_depth_estimate_runs_on_a_replica(engine, backend, photo):
    front, _ = backend
    with one_thread():
        local = engine.estimate_depth(photo, "midas")
    assert np.array_equal(np.asarray(local), np.asarray(front.estimate_depth(photo, "midas")))


def test_bad_input_is_refused_by_the_front_end_and_a_replica_error_keeps_its_type(engine, backend, photo):
    front, _ = backend
    with pytest.raises(ValueError, match="strength must be in"):
        list(front.run(Img2ImgRequest(image=photo, prompt="x", strength=0)))
    # a plan that fails on the replica: the same ValueError, raised here
    plan = engine.plan(DepthRequest(image=photo, prompt="a cat", num_inference_steps=STEPS, seed=2))
    broken = replace(plan, estimator=replace(plan.estimator, key="not-a-model"))
    with pytest.raises((ValueError, KeyError), match="not-a-model"):
        list(front.run(broken))


def test_stop_ends_a_sweep_with_the_cells_made_and_frees_the_replicas(engine, backend, photo):
    front, calls = backend
    token = CancelToken()
    plan = engine.plan(sweep_request(photo.resize((256, 256)), steps=150))  # long, at the largest quick size
    seen: list[tuple[float, int, int]] = []

    def stop_after_some_steps(done, total):
        seen.append((time.monotonic(), done, total))
        if done >= 10:
            token.cancel()

    progress = list(front.run(plan, progress=stop_after_some_steps, cancel=token))
    assert progress[-1].stopped and progress[-1].stopped.startswith("stopped by the user after")
    assert len(progress[-1].done_cells) < len(plan.cells)
    # what was left of the sweep, had the replicas gone on: its steps at the pace seen, on 2 replicas
    (start, first, _), (end, done, total) = seen[0], seen[-1]
    left = (total - done) * (end - start) / max(1, done - first) / 2
    # Basic has nothing to keep: a Stop raises, naming the steps done
    basic = CancelToken()
    with pytest.raises(GenerationCancelled, match="stopped by the user after"):
        front.img2img(
            Img2ImgRequest(image=photo, prompt="x", num_inference_steps=40, strength=1.0),
            progress=lambda done, total: basic.cancel(),
            cancel=basic,
        )
    # both replicas stopped at their next step: two jobs sent now finish long before the sweep would have
    results = []

    def basic(seed: int) -> None:
        results.append(front.img2img(Img2ImgRequest(image=photo, prompt="x", seed=seed)))

    runs = [threading.Thread(target=basic, args=(seed,)) for seed in (1, 2)]
    started = time.monotonic()
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=300)
    assert len(results) == 2 and calls.busy() == []
    assert time.monotonic() - started < left / 3, (time.monotonic() - started, left)


def test_a_replica_killed_mid_sweep_is_replaced_and_its_part_rerun_with_the_same_seeds(engine, backend, photo):
    front, calls = backend
    plan = engine.plan(sweep_request(photo, steps=40))
    expected = local_run(engine, plan)[-1]
    other = engine.plan(Img2ImgRequest(image=photo, prompt="another visitor", num_inference_steps=STEPS, seed=11))
    other_expected = local_run(engine, other)[-1]
    killed: list[str] = []

    others: list = []
    waiting = threading.Thread(target=lambda: others.extend(front.run(other)))  # a job sent during the recovery

    def kill_once(done, total):
        if not killed and calls.busy():
            killed.append(calls.busy()[0])
            kill(killed[0])
            waiting.start()

    done = list(front.run(plan, progress=kill_once))[-1]
    waiting.join(timeout=300)
    assert killed, "no replica was killed"
    assert done.stopped is None and len(done.done_cells) == len(plan.cells)
    assert_same_pixels(expected, done)
    assert any(f"Ray Serve replica {killed[0]}" in note and "same seeds" in note for note in done.notes), done.notes
    assert_same_pixels(other_expected, others[-1])  # nothing else in the queue was lost


def test_a_job_whose_replica_dies_twice_fails_with_a_clear_message(engine, backend, photo):
    front, calls = backend
    killed: list[str] = []

    def kill_each_replica_it_runs_on(done, total):
        busy = calls.busy()
        if busy and busy[0] not in killed:
            killed.append(busy[0])
            kill(busy[0])

    request = Img2ImgRequest(image=photo, prompt="x", num_inference_steps=60, strength=1.0, seed=4)
    with pytest.raises(scale_out.ReplicaLost, match=r"stopped twice .*run it again"):
        front.img2img(request, progress=kill_each_replica_it_runs_on)
    assert len(killed) == 2
    # Serve replaces both: the next job runs and equals the local one
    plan = engine.plan(replace(request, num_inference_steps=STEPS))
    assert_same_pixels(local_run(engine, plan)[-1], list(front.run(plan))[-1])


def test_the_ray_backend_says_what_is_missing_or_wrong(settings, monkeypatch):
    with pytest.raises(ValueError, match=r"STUDIO_REPLICAS must be 0 .* got -1"):
        scale_out.start(Engine(replace(settings, replicas=-1)))
    monkeypatch.setitem(sys.modules, "ray.serve", None)  # Ray Serve not installed
    monkeypatch.delattr(ray, "serve", raising=False)
    with pytest.raises(RuntimeError, match=r"pip install -r requirements-ray\.txt"):
        scale_out.start(Engine(settings))


def test_the_backend_works_where_an_event_loop_runs(engine, backend, photo):
    """A notebook's cell (or Playwright's sync API) runs in a running asyncio loop, where Serve refuses
    blocking calls: the backend makes them off that loop."""
    front, _ = backend
    small = photo.resize((96, 64))

    async def notebook_cell():
        depth = front.estimate_depth(small, "depth-anything-v2-small")
        return depth, front.img2img(Img2ImgRequest(image=small, prompt="x", num_inference_steps=STEPS, seed=9))

    answers: list = []  # the cell runs in a thread of its own: this one may hold a running loop already
    cell = threading.Thread(target=lambda: answers.append(asyncio.run(notebook_cell())))
    cell.start()
    cell.join(timeout=300)
    ((depth, result),) = answers
    assert depth.size == small.size and len(result.images) == 1
