"""The Ray Serve backend: the engine's GPU work on N replicas of a Serve deployment.

    python app.py --backend ray [--ray-address ADDR] [--replicas N]

The front end (Gradio, planning, the results store) stays one process. `start(engine)` joins or starts
Ray, deploys `EngineReplica` with N replicas (one GPU each where the cluster has GPUs, one CPU each where
it has none) and sets `RayCalls` as the engine's gpu_calls: every tab, API endpoint and MCP tool reaches
the replicas through Engine.run and Engine.depth_array, as on ZeroGPU, so the UI is the same code.

* **Routing**: a request is multiplexed by its main model's catalog key (`serve.multiplexed`), so Serve
  sends it to a replica that has served that model when one is free; each replica keeps its own LRU
  pipeline cache. A replica runs one job at a time (`max_ongoing_requests=1`); the rest wait in Serve's
  queue, so the front end's concurrency is the number of replicas.
* **Progress**: a replica streams ("step", done, total) at every denoising step and each progress object
  the workflow yields; the front end reports the steps to the page's bar.
* **Stop** and a closed page cancel the request; the replica sets its job's CancelToken, so the work
  stops at its next step, and the front end ends the run with what came back (`stopped` set).
* **Fan-out**: a plan whose workflow has `parts` (a sweep: one per pipeline call) is sent as its parts at
  once; the replicas run them side by side and `gather` takes them back in order: the same cells, seeds
  and pixels as one process.
* **Faults**: a replica that dies mid-request (killed, crashed, its node lost) is replaced by Serve, and
  the part it was running is sent again, once, as the same plan with the same seeds; a second death
  fails the job with ReplicaLost. Other jobs and parts are not touched.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import os
import pickle
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.base.settings import Settings
from engine.core import Engine
from engine.pipelines.calls import CancelToken, GenerationCancelled, ProgressFn
from engine.workflows.registry import workflow_of

logger = logging.getLogger(__name__)

APP_NAME = "img2img-studio"
DEPLOYMENT = "StudioEngine"
MODELS_PER_REPLICA = 4  # model keys Serve remembers per replica for routing (the cache's budget decides memory)
POLL_SECONDS = 0.2  # how often a waiting front end looks at the job's Stop
ENV_PREFIXES = ("STUDIO_", "HF_", "HUGGINGFACE_")  # passed on to the replicas, so they load as the front end would
INSTALL_HINT = "the ray backend needs Ray Serve: pip install -r requirements-ray.txt"


class ReplicaLost(RuntimeError):
    """The replicas running a job died twice: once, and again on the retry."""


class EngineReplica:
    """What each Serve replica runs: an Engine of its own, fed plans by the front end.

    Args:
        settings: the front end's settings, its model mode resolved (no Hub probe per replica).
        pin: one core and one torch thread per replica (the benchmark's side-by-side measure).
    """

    def __init__(self, settings: Settings, pin: bool = False) -> None:
        if pin:
            _pin_to_one_core()
        self.engine = Engine(settings, zero_gpu=False)
        self.engine.preload()
        self.name = _replica_name()

    async def model(self, model_id: str) -> str:
        """The model key a request is routed by (serve.multiplexed wraps this in the deployment)."""
        return model_id

    def describe(self) -> str:
        """This replica's device, as the page header says it."""
        return self.engine.device_text

    async def run(self, plan: Any, key: str) -> Any:
        """Stream a plan's run: ("replica", name), then ("step", done, total) and ("item", progress) as they
        come, and ("error", exception) if it fails. A cancelled request stops the work at its next step."""
        await self.model(key)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        token = CancelToken()

        def put(event: tuple) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        def work() -> None:
            try:

                def progress(done: int, total: int) -> None:
                    put(("step", done, total))

                for item in self.engine.run_here(plan, progress=progress, cancel=token):
                    put(("item", item))
                put(("end",))
            except Exception as exc:  # sent to the front end, which raises it there
                put(("error", _portable(exc)))

        yield ("replica", self.name)
        worker = loop.run_in_executor(None, work)
        try:
            while (event := await events.get())[0] != "end":
                yield event
                if event[0] == "error":
                    break
        finally:
            token.cancel()  # a cancelled request: the worker stops at its next step and lets go of the lock
            with contextlib.suppress(Exception):
                await worker

    async def depth(self, key: str, image: Any) -> tuple:
        """("ok", an estimator's depth array of `image`) or ("error", exception)."""
        await self.model(key)
        loop = asyncio.get_running_loop()
        estimate = functools.partial(self.engine.depth_array, key, image, here=True)
        try:
            return ("ok", await loop.run_in_executor(None, estimate))
        except Exception as exc:  # raised again in the front end
            return ("error", _portable(exc))


def _portable(exc: Exception) -> Exception:
    """The exception itself when it pickles (so the front end raises the same type), else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # an exception holding something that cannot cross processes
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _replica_name() -> str:
    """The replica's actor name (what `ray.kill` takes, and what a retry note names)."""
    import ray

    return ray.get_runtime_context().get_actor_name() or "a replica"


def _pin_to_one_core() -> None:
    """Every thread of this process on one core (by the replica's rank on its node), one torch thread."""
    import torch
    from ray import serve

    cores = sorted(os.sched_getaffinity(0))
    rank = serve.get_replica_context().rank.local_rank
    core = {cores[rank % len(cores)]}
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), core)
    torch.set_num_threads(1)


def deployment(replicas: int, *, gpus: bool) -> Any:
    """The Serve deployment of EngineReplica: `replicas` of it, one GPU (or one CPU) each, one job at a time."""
    serve = _serve()

    class StudioEngine(EngineReplica):
        @serve.multiplexed(max_num_models_per_replica=MODELS_PER_REPLICA)
        async def model(self, model_id: str) -> str:
            return model_id

    return serve.deployment(
        StudioEngine,
        name=DEPLOYMENT,
        num_replicas=replicas,
        max_ongoing_requests=1,
        ray_actor_options={"num_gpus": 1} if gpus else {"num_cpus": 1},
    )


def _serve() -> Any:
    try:
        from ray import serve
    except ImportError as exc:
        raise RuntimeError(INSTALL_HINT) from exc
    return serve


def start(engine: Engine, *, pin: bool = False) -> RayCalls:
    """Join (STUDIO_RAY_ADDRESS) or start Ray, deploy the replicas and make them run the engine's GPU work.

    Raises:
        ValueError: STUDIO_REPLICAS below 0, or more replicas than the cluster has GPUs.
        RuntimeError: Ray Serve is not installed.
    """
    settings = engine.settings
    if settings.replicas < 0:
        raise ValueError(f"STUDIO_REPLICAS must be 0 (one per GPU) or more; got {settings.replicas}")
    serve = _serve()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    if not ray.is_initialized():
        ray.init(
            address=settings.ray_address or "local",
            include_dashboard=False,
            runtime_env=runtime_env(),
            logging_level=logging.WARNING,
        )
    gpus = int(ray.cluster_resources().get("GPU", 0))
    replicas = settings.replicas or max(1, gpus)
    if gpus and replicas > gpus:
        raise ValueError(f"STUDIO_REPLICAS asks for {replicas} replicas of one GPU each; the cluster has {gpus}")
    return _off_loop(_deploy, engine, serve, replicas, gpus, pin)


def _deploy(engine: Engine, serve: Any, replicas: int, gpus: int, pin: bool) -> RayCalls:
    settings = engine.settings
    serve.start(proxy_location="Disabled")  # the front end calls the replicas through a handle: no HTTP port
    # The replicas load what this front end would: its model mode (no Hub probe each) and an absolute data dir.
    data_dir = Path(settings.data_dir).resolve()
    replica_settings = dataclasses.replace(settings, models=str(engine.mode), data_dir=data_dir)
    app = deployment(replicas, gpus=gpus > 0).bind(replica_settings, pin)
    handle = serve.run(app, name=APP_NAME, route_prefix=None)
    calls = RayCalls(handle, replicas)
    engine.gpu_calls = calls
    logger.info("Ray Serve backend: %s", calls.where)
    return calls


def _off_loop(fn: Any, *args: Any) -> Any:
    """fn(*args) in a thread with no asyncio loop running. Serve's handles refuse blocking calls inside a
    running loop (a notebook's, Playwright's sync API's) and run their router in that loop when made in
    one; made and called off it, they work wherever the engine is used."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    result: list = []
    failure: list[BaseException] = []

    def call() -> None:
        try:
            result.append(fn(*args))
        except BaseException as exc:  # raised again in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=call, name="ray-off-loop")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def runtime_env() -> dict:
    """What every Ray worker gets: the engine package (uploaded, so a cluster's nodes need only the
    requirements) and the front end's STUDIO_ and Hugging Face variables."""
    env = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIXES)}
    return {"py_modules": [str(Path(__file__).resolve().parent)], "env_vars": env}


def model_key(plan: Any) -> str:
    """The catalog key a plan is routed by: the model of its largest denoising loop."""
    work = workflow_of(plan).work(plan)
    return max(work, key=lambda loop: loop.steps * loop.pixels * loop.images).key if work else ""


def _lost_errors() -> tuple[type[BaseException], ...]:
    """What a request raises when its replica died under it."""
    from ray.exceptions import RayActorError
    from ray.serve.exceptions import ReplicaUnavailableError

    return (RayActorError, ReplicaUnavailableError)


def _cancelled_errors() -> tuple[type[BaseException], ...]:
    """What a request raises once it has been cancelled."""
    import concurrent.futures

    from ray.exceptions import TaskCancelledError

    return (TaskCancelledError, asyncio.CancelledError, concurrent.futures.CancelledError)


class RayCalls:
    """The engine's GPU work as requests to the Serve deployment (engine.core.GpuCalls).

    Args:
        handle: the deployment's handle (serve.run's answer).
        replicas: how many replicas serve: the front end's concurrency.
    """

    def __init__(self, handle: Any, replicas: int) -> None:
        self.handle = handle
        self.concurrency: int | None = replicas
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}  # replica name -> requests of this front end running on it
        self.served: collections.Counter[str] = collections.Counter()  # replica name -> requests it took
        device = handle.describe.remote().result()
        self.where = f"{device} on each of {replicas} Ray Serve replica(s)"

    def busy(self) -> list[str]:
        """Names of the replicas running a request of this front end now."""
        with self._lock:
            return sorted(name for name, count in self._running.items() if count)

    def run(self, plan: Any, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> Iterator[Any]:
        """A plan's progress objects as Engine.run_here yields them, the work done on the replicas."""
        workflow = workflow_of(plan)
        parts = workflow.parts(plan) if workflow.parts is not None else [plan]
        job = _Job(self, parts)
        whole = workflow.start(plan) if workflow.parts is not None and workflow.start is not None else None
        last: Any = None  # a whole plan's latest progress (None before its first)
        lasts: dict[int, Any] = {}  # a part's latest progress
        done: set[int] = set()
        received = [0] * len(parts)  # items of the current attempt, per part
        sent = 0  # items passed on (a retried whole plan repeats the ones already sent: skipped)
        notes: list[str] = []
        steps, totals = [0] * len(parts), [0] * len(parts)
        gathered = 0
        try:
            while gathered < len(parts):
                if cancel is not None and cancel.cancelled:
                    job.cancel()
                    stopped = str(GenerationCancelled(sum(steps)))
                    if whole is not None:
                        for index in sorted(set(lasts) - set(range(gathered))):
                            workflow.gather(whole, lasts[index])  # type: ignore[misc]
                        whole.stopped = stopped
                        yield _noted(whole, notes)
                    elif workflow.start is not None:
                        last = last if last is not None else workflow.start(plan)
                        last.stopped = stopped
                        yield _noted(last, notes)
                    else:
                        raise GenerationCancelled(sum(steps))
                    return
                try:
                    index, event = job.events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                kind = event[0]
                if kind == "step":
                    steps[index], totals[index] = event[1], event[2]
                    if progress is not None:
                        known = [total for total in totals if total]
                        expected = sum(total or max(known) for total in totals)
                        progress(sum(steps), max(expected, sum(steps)))
                elif kind == "item":
                    received[index] += 1
                    if whole is not None:
                        lasts[index] = event[1]
                    elif received[index] > sent:
                        sent, last = received[index], event[1]
                        yield _noted(last, notes)
                elif kind == "retry":
                    notes.append(event[1])
                    logger.warning("%s", event[1])
                    received[index], steps[index] = 0, 0
                elif kind == "error":
                    raise event[1]
                elif kind == "done":
                    done.add(index)
                    while gathered in done:  # parts come back in their order
                        if whole is not None:
                            workflow.gather(whole, lasts[gathered])  # type: ignore[misc]
                            gathered += 1
                            yield _noted(whole, notes)
                        else:
                            gathered += 1
        finally:
            job.cancel()  # a closed page, an error, or nothing left to cancel

    def depth(self, key: str, image: Any) -> Any:
        """An estimator's depth array, from a replica (again once if the replica dies)."""
        lost = _lost_errors()
        for attempt in (1, 2):
            try:
                response = self.handle.options(multiplexed_model_id=key).depth.remote(key, image)
                status, value = _off_loop(response.result)
            except lost as exc:
                if attempt == 2:
                    raise ReplicaLost(_lost_text("depth estimate", exc)) from exc
                logger.warning("a replica died during a depth estimate (%s); asking again", type(exc).__name__)
                continue
            if status == "error":
                raise value
            return value
        raise AssertionError("unreachable")

    def _started(self, name: str, change: int) -> None:
        with self._lock:
            self._running[name] = self._running.get(name, 0) + change
            if change > 0:
                self.served[name] += 1


class _Job:
    """One run's requests: a thread per part streams its events into one queue; retries a lost replica once."""

    def __init__(self, calls: RayCalls, parts: list[Any]) -> None:
        self.calls = calls
        self.events: queue.Queue[tuple[int, tuple]] = queue.Queue()
        self._responses: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._cancelled = False
        for index, part in enumerate(parts):
            threading.Thread(target=self._pump, args=(index, part), daemon=True, name=f"ray-part-{index}").start()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            responses = list(self._responses.values())
            self._responses.clear()
        for response in responses:
            with contextlib.suppress(Exception):  # best effort: a request that already ended
                response.cancel()

    def _pump(self, index: int, plan: Any) -> None:
        lost, cancelled = _lost_errors(), _cancelled_errors()
        key = model_key(plan)
        first_loss = ""
        for attempt in (1, 2):
            response = self.calls.handle.options(stream=True, multiplexed_model_id=key).run.remote(plan, key)
            with self._lock:
                if self._cancelled:
                    response.cancel()
                    return
                self._responses[index] = response
            replica = ""
            try:
                for event in response:
                    if event[0] == "replica":
                        replica = event[1]
                        self.calls._started(replica, +1)
                    else:
                        self.events.put((index, event))
                self.events.put((index, ("done",)))
                return
            except cancelled:
                return
            except lost as exc:
                if self._cancelled:
                    return
                what = f"{replica or 'a replica'} ({type(exc).__name__})"
                if attempt == 2:
                    self.events.put((index, ("error", ReplicaLost(_lost_text("job", exc, first_loss, what)))))
                    return
                first_loss = what
                self.events.put(
                    (
                        index,
                        (
                            "retry",
                            f"Recovered: Ray Serve replica {what} stopped mid-run; its part ran again "
                            "with the same seeds.",
                        ),
                    )
                )
            except Exception as exc:  # anything else the request raised: the job fails with it
                self.events.put((index, ("error", exc)))
                return
            finally:
                if replica:
                    self.calls._started(replica, -1)
                with self._lock:
                    self._responses.pop(index, None)


def _lost_text(what: str, exc: BaseException, first: str = "", second: str = "") -> str:
    lost = f" ({first}, then {second})" if first else f" ({type(exc).__name__})"
    return (
        f"the Ray Serve replicas running this {what} stopped twice{lost}, so it was given up. Other jobs go on; "
        "run it again, and if it keeps happening see the replicas' logs (a replica out of memory is the usual cause)."
    )


def _noted(item: Any, notes: list[str]) -> Any:
    """A progress object with the backend's notes added (a frozen result gets a copy)."""
    if not notes:
        return item
    held = getattr(item, "notes", None)
    if isinstance(held, list):
        held.extend(note for note in notes if note not in held)
        return item
    if isinstance(held, tuple):
        return dataclasses.replace(item, notes=(*held, *(note for note in notes if note not in held)))
    return item
