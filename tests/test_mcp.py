"""The MCP tools, driven by the official `mcp` SDK client over streamable HTTP, as an agent would.

Images go in as a data: URI (what a client does with a local file) or as a URL the server returned,
and come back inline and as a URL whose file still carries the recipe.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image
from workflow_cases import CASES

from engine.workflows.registry import read_recipe

TOOLS = {*CASES, "estimate_depth", "recipe"}  # every workflow's tool, the depth estimate and the recipe reader


@pytest.fixture(scope="module")
def mcp_url(mcp_server):
    return mcp_server + "gradio_api/mcp/"


def data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def in_thread(coroutine):
    """asyncio.run in a thread of its own: the browser tests' Playwright keeps a loop running in this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def session_call(url: str, work):
    """Run `work(session)` in a fresh client session of the official SDK."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def main():
        async with streamable_http_client(url) as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            return await work(session)

    return in_thread(main())


def call(url: str, name: str, arguments: dict, **options):
    return session_call(url, lambda session: session.call_tool(name, arguments, **options))


def images_of(result) -> list[bytes]:
    return [base64.b64decode(block.data) for block in result.content if block.type == "image"]


def text_of(result) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def test_tools_are_listed_with_whole_descriptions_required_flags_and_integer_types(mcp_url):
    async def work(session):
        return {tool.name: tool for tool in (await session.list_tools()).tools}

    tools = session_call(mcp_url, work)
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert "upload_file_to_gradio" not in tool.description
        assert all(prop.get("description") for prop in tool.inputSchema["properties"].values()), tool.name
    required = {name: set(tool.inputSchema.get("required", [])) for name, tool in tools.items()}
    assert required == {
        **{name: set(case.mcp_required) for name, case in CASES.items()},
        "estimate_depth": {"image"},
        "recipe": set(),
    }
    props = {name: tool.inputSchema["properties"] for name, tool in tools.items()}
    for name, field in [
        ("img2img", "num_inference_steps"),
        ("img2img", "seed"),
        ("img2img", "num_images"),
        ("sweep", "num_inference_steps"),
        ("chain", "width"),
        ("chain", "height"),
        ("depth", "num_inference_steps"),
    ]:
        assert props[name][field]["type"] == "integer", (name, field)
    assert props["img2img"]["strength"]["type"] == "number"
    # whole descriptions, continuation lines included (Gradio's parser kept the first line only)
    assert "sides rounded to the model's multiple" in props["img2img"]["image"]["description"]
    assert "or model" in props["sweep"]["x_axis"]["description"]
    assert '"model": "sd15"' in props["chain"]["stages"]["description"]
    assert "1 to 150" in props["img2img"]["num_inference_steps"]["description"]
    assert props["img2img"]["model"]["enum"][0] == "sd15"
    assert "At most 64 cells" in tools["sweep"].description


def test_img2img_returns_images_inline_and_as_urls_that_keep_the_recipe(mcp_url, photo):
    steps = []

    async def progress(done, total, message):
        steps.append((done, total))

    arguments = {
        "image": data_uri(photo),
        "prompt": "a cat wizard",
        "strength": 0.5,
        "num_inference_steps": 6,
        "seed": 7,
        "num_images": 2,
    }
    result = call(mcp_url, "img2img", arguments, progress_callback=progress)
    assert not result.isError, text_of(result)
    inline = images_of(result)
    assert len(inline) == 3  # two results and the comparison grid
    first = read_recipe(inline[0])
    assert (first.seed, first.parameters["prompt"], first.parameters["num_inference_steps"]) == (7, "a cat wizard", 6)
    assert read_recipe(inline[1]).seed == 8
    urls = [image["url"] for image in result.structuredContent["results"]]
    assert httpx.get(urls[0], timeout=30).content == inline[0]  # the served file is the PNG with its recipe
    summary = result.structuredContent["summary"]
    assert "Seed 7–8" in summary
    # the summary counts the steps the client's progress bar counted: strength 0.5 runs part of the 6-step schedule
    ran = int(re.search(r"(\d+) denoising steps", summary).group(1))
    assert steps and ran == steps[-1][1] < 6
    assert "**" not in summary  # plain text, not Markdown
    assert "diffusers" in result.structuredContent["script"]
    assert steps and steps[-1][0] == steps[-1][1]  # progress notifications reached the client


def test_a_url_the_server_returned_is_an_image_input(mcp_url, photo):
    made = call(mcp_url, "img2img", {"image": data_uri(photo), "prompt": "x", "num_inference_steps": 2, "seed": 3})
    url = made.structuredContent["results"][0]["url"]
    result = call(mcp_url, "recipe", {"image": url})
    assert not result.isError, text_of(result)
    assert "seed: 3" in result.structuredContent["fields"].splitlines()
    assert json.loads(result.structuredContent["recipe"])["seeds"] == [3]
    assert (
        "StableDiffusionImg2ImgPipeline" in result.structuredContent["script"]
        or "AutoPipeline" in (result.structuredContent["script"])
    )


def test_sweep_chain_depth_and_estimate_depth_return_images(mcp_url, photo):
    image = data_uri(photo)
    sweep = call(
        mcp_url,
        "sweep",
        {"image": image, "prompt": "a cat", "num_inference_steps": 4, "seed": 1, "x_axis": "seed", "x_values": "1-2"},
    )
    assert not sweep.isError, text_of(sweep)
    grid = Image.open(io.BytesIO(images_of(sweep)[0]))
    assert grid.width >= 2 * 136 and grid.height > 96  # two cells and their labels
    assert len(sweep.structuredContent["cells"]) == 2
    assert sweep.structuredContent["summary"].startswith("Done: 2/2 cells")

    chain = call(mcp_url, "chain", {"image": image, "preset": "image-image-image", "seed": 5})
    assert not chain.isError, text_of(chain)
    assert len(chain.structuredContent["stages"]) == 3
    assert read_recipe(httpx.get(chain.structuredContent["final"]["url"], timeout=30).content).workflow == "chain"

    depth = call(mcp_url, "depth", {"image": image, "num_inference_steps": 4, "seed": 2, "restyle_model": "none"})
    assert not depth.isError, text_of(depth)
    assert "ControlNet img2img: seed 2" in depth.structuredContent["summary"]
    last = depth.structuredContent["images"][-1]["url"]  # the ControlNet result, restyle skipped
    assert read_recipe(httpx.get(last, timeout=30).content).workflow == "depth"

    estimated = call(mcp_url, "estimate_depth", {"image": image, "depth_estimator": "depth-anything-v2-small"})
    assert not estimated.isError, text_of(estimated)
    depth_map = Image.open(io.BytesIO(images_of(estimated)[0]))
    assert depth_map.size == photo.size


def test_edit_reads_several_images_and_continues_a_sequence(mcp_url, photo):
    """The edit tool through the official SDK: FLUX.2 [klein] with a second image, then the result edited again as
    `previous` names it; the second result's recipe records the first edit."""
    reference = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arguments = {"image": data_uri(photo), "reference_2": data_uri(reference), "num_inference_steps": 2, "seed": 4}
    first = call(mcp_url, "edit", {**arguments, "prompt": "put the cat of image 2 beside it"})
    assert not first.isError, text_of(first)
    url = first.structuredContent["results"][0]["url"]
    recipe = read_recipe(httpx.get(url, timeout=30).content)
    assert recipe.model == "flux2-klein-4b" and len(recipe.extra["references"]) == 1
    second = call(
        mcp_url,
        "edit",
        {
            "image": url,
            "prompt": "make it night",
            "num_inference_steps": 2,
            "seed": 5,
            "previous": url.split("/")[-1][:32],
        },
    )
    assert not second.isError, text_of(second)
    assert "Edit 2 of a sequence" in second.structuredContent["summary"]
    again = read_recipe(httpx.get(second.structuredContent["results"][0]["url"], timeout=30).content)
    assert [edit["call"]["prompt"] for edit in again.extra["edits"]] == ["put the cat of image 2 beside it"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"strength": 1.5}, "strength must be in (0, 1], got 1.5"),
        ({"image": "http://169.254.169.254/latest/meta-data"}, "image could not be fetched"),
        ({"image": "file:///etc/passwd"}, "image must be a data: URI or an http(s) URL"),
        ({"image": "data:image/png;base64,not base64!"}, "image is not valid base64"),
        ({"model": "../../etc"}, "model must be one of"),
    ],
)
def test_bad_arguments_are_tool_errors_naming_the_parameter(mcp_url, photo, arguments, message):
    result = call(mcp_url, "img2img", {"image": data_uri(photo), "prompt": "x", **arguments})
    assert result.isError
    assert message in text_of(result)


def test_a_null_image_is_no_image_not_an_internal_error(mcp_url):
    """A null argument once became the job's cancel token (ui/events.cancellable), failing as an internal error."""
    read = call(mcp_url, "recipe", {"image": None, "infotext": "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7"})
    assert not read.isError, text_of(read)
    assert "a cat" in text_of(read)
    empty = call(mcp_url, "recipe", {"image": None})
    assert empty.isError and "Internal error" not in text_of(empty)
    assert "infotext" in text_of(empty)


def test_a_url_on_this_server_must_name_a_file_it_returned(mcp_url, photo):
    own = mcp_url.removesuffix("gradio_api/mcp/")
    odd = (f"{own}gradio_api/file=/tmp/a%00b.png", f"{own}gradio_api/file=/tmp/{'a' * 5000}.png")  # NUL, too long
    for url in (f"{own}gradio_api/file=/etc/passwd", f"{own}gradio_api/file=../../etc/passwd", f"{own}config", *odd):
        result = call(mcp_url, "recipe", {"image": url})
        assert result.isError and "this server" in text_of(result), url


def test_schema_route_and_gradio_mcp_switch(mcp_url):
    from engine.base.settings import Settings

    tools = httpx.get(mcp_url + "schema", timeout=30).json()
    assert {tool["name"] for tool in tools} == TOOLS
    assert Settings.from_env({"GRADIO_MCP_SERVER": "true"}).mcp is True
    assert Settings.from_env({"GRADIO_MCP_SERVER": "true", "STUDIO_MCP": "false"}).mcp is False


def test_tool_calls_wait_one_at_a_time_and_a_full_queue_says_so(engine):
    """With one job running and STUDIO_QUEUE_SIZE (here 1) waiting, the next call is refused at once."""
    import ui
    from ui.mcp import ToolFailed, ToolServer

    app = ui.build_app(engine)
    server = ToolServer(replace(engine.settings, queue_size=1), ui.mcp_tools(app))
    recipe = server.tools["recipe"]
    infotext = {"infotext": "a fox\nSteps: 9, Sampler: Euler, CFG scale: 6, Seed: 2"}

    async def main():
        await server._running.acquire()  # a job is running
        waiting = asyncio.create_task(server._run(recipe, dict(infotext), None))
        while server._waiting < 1:  # the call has joined the wait
            await asyncio.sleep(0)
        with pytest.raises(ToolFailed, match=r"The queue is full \(1 jobs waiting\)"):
            await server._run(recipe, dict(infotext), None)
        assert not waiting.done()  # one at a time: it waits for the running job
        server._running.release()
        return await waiting

    fields, *_ = in_thread(main())
    assert "prompt: 'a fox'" in fields.splitlines()


def test_an_image_of_several_megabytes_is_taken_and_one_over_the_limit_named(mcp_url, engine, launch):
    """The SDK capped bodies at 4 MiB: a 3 MB image failed with a bare HTTP 413 under the app's 25 MB limit."""
    from dataclasses import replace

    import numpy as np

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1000, 1300, 3), dtype=np.uint8))
    uri = data_uri(noise)
    assert len(uri) > 4 * 2**20  # past the SDK's default, under the app's upload limit
    taken = call(mcp_url, "recipe", {"image": uri})  # a PNG with no recipe: the tool's own answer, not HTTP's
    assert taken.isError and "image carries neither an Img2Img Studio recipe" in text_of(taken)
    small = launch(type(engine)(replace(engine.settings, mcp=True, max_file_mb=2)))
    try:
        over = call(small.studio_url + "gradio_api/mcp/", "recipe", {"image": data_uri(noise)})
        assert over.isError and "image is larger than the upload limit of 2 MB" in text_of(over)
    finally:
        small.close()


def test_a_clients_cancel_stops_the_job_at_its_next_step(engine, launch, photo):
    """notifications/cancelled from the official SDK: the job stops at a step, lets go of the lock, and the
    session's next call runs. (A stateless server once took the notice in a fresh session and ignored it.)"""
    from mcp import types

    own = type(engine)(replace(engine.settings, mcp=True))
    app = launch(own)
    unet = own.cache.get("sd15").unet
    calls = [0]
    hook = unet.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    arguments = {"image": data_uri(photo), "prompt": "a cat", "strength": 1.0, "seed": 1}

    async def work(session):
        long = asyncio.create_task(session.call_tool("img2img", {**arguments, "num_inference_steps": 150}))
        deadline = asyncio.get_running_loop().time() + 300
        while calls[0] < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert calls[0] >= 3, "the job never started"
        cancel = types.CancelledNotification(
            params=types.CancelledNotificationParams(requestId=session._request_id - 1, reason="the user stopped it")
        )
        await session.send_notification(types.ClientNotification(cancel))

        def freed() -> bool:  # taken and given back in one thread: the lock is reentrant, owned per thread
            if not own.cache.lock.acquire(timeout=120):
                return False
            own.cache.lock.release()
            return True

        assert await asyncio.to_thread(freed), "the cancelled job still holds the lock"
        long.cancel()
        after = await session.call_tool("img2img", {**arguments, "num_inference_steps": 2})
        return after

    try:
        after = session_call(app.studio_url + "gradio_api/mcp/", work)
        assert calls[0] < 150  # stopped at a step boundary, long before its 150 steps
        assert not after.isError and images_of(after)
    finally:
        hook.remove()
        app.close()


def test_one_client_holds_a_bounded_number_of_event_streams(mcp_url):
    """300 MCP GET streams of one client were held forever, pinning sessions that never went idle."""
    from ui.guards import STREAMS_PER_CLIENT

    async def main():
        async with httpx.AsyncClient(timeout=60) as http:
            headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
            streams, answers = [], []
            for _ in range(STREAMS_PER_CLIENT + 1):
                hello = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-06-18",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                }
                started = await http.post(mcp_url, json=hello, headers=headers)
                session = {"mcp-session-id": started.headers["mcp-session-id"], "accept": "text/event-stream"}
                stream = http.stream("GET", mcp_url, headers=session)
                answer = await stream.__aenter__()
                streams.append(stream)
                answers.append(answer.status_code)
            for stream in streams:
                await stream.__aexit__(None, None, None)
            return answers

    answers = in_thread(main())
    assert answers == [200] * STREAMS_PER_CLIENT + [429]


def test_a_tool_left_to_its_defaults_matches_the_gradio_api_left_to_its_defaults(mcp_url, client):
    """Depth's restyle defaults differed (None as a tool, the sliders' values on the API): the same call made two
    images. Every parameter of every tool now defaults to what the Gradio API's clients send."""
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    schemas = {tool["name"]: tool["inputSchema"]["properties"] for tool in httpx.get(mcp_url + "schema").json()}
    for name, properties in schemas.items():
        for parameter in endpoints[f"/{name}"]["parameters"]:
            if not parameter["parameter_has_default"] or parameter["parameter_name"] not in properties:
                continue
            mcp_default = properties[parameter["parameter_name"]].get("default")
            assert mcp_default == parameter["parameter_default"], (name, parameter["parameter_name"])


def test_files_the_gradio_api_returned_and_localhost_urls_are_this_servers_own(mcp_url, client, photo, tmp_path):
    from gradio_client import handle_file

    photo.save(tmp_path / "cat.png")
    gallery, *_ = client.predict(
        handle_file(str(tmp_path / "cat.png")), "a cat", num_inference_steps=2, seed=3, api_name="/img2img"
    )
    own = urlsplit(mcp_url)
    served = f"{own.scheme}://{own.netloc}/gradio_api/file={gallery[0]['image']}"  # where the Gradio API serves it
    for url in (served, served.replace("127.0.0.1", "localhost")):
        result = call(mcp_url, "recipe", {"image": url})
        assert not result.isError, (url, text_of(result))
        assert "seed: 3" in result.structuredContent["fields"].splitlines()


def test_the_sse_route_of_gradios_own_mcp_server_says_where_to_go(mcp_url):
    answer = httpx.get(mcp_url + "sse", headers={"Accept": "text/event-stream"}, timeout=30)
    assert answer.status_code == 404
    assert "streamable HTTP at /gradio_api/mcp/ (no SSE transport)" in answer.text


def test_a_relative_data_dir_still_gives_urls(engine, tmp_path, monkeypatch, photo):
    """With STUDIO_DATA_DIR relative (the default .huggingface), the chain tool returned final as a bare path."""
    from ui.mcp import ToolServer

    monkeypatch.chdir(tmp_path)
    settings = replace(engine.settings, data_dir="relative-data")
    png = Path("relative-data") / "outputs" / "x.png"
    png.parent.mkdir(parents=True)
    photo.save(png)
    server = ToolServer(settings, [])
    assert server._is_served_png(str(png)) and not server._is_served_png("relative-data/outputs/missing.png")
