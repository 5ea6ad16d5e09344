"""The README's Python examples, run as a reader would run them, in order, against the app in tiny mode.

Each ```python block of README.md is executed as written, with only the server address changed to the
test server's; the files they name (cat.png, astronaut.png, motorcycle.png) are the scikit-image photos
in the working folder, and result.png is what the first example saves. An example that drifts from
the API (a wrong number of results, a parameter that is gone) fails here.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image
from workflow_cases import CASES

README = Path(__file__).resolve().parent.parent / "README.md"
README_URL = "http://127.0.0.1:7860/"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.fixture()
def reader_folder(tmp_path, monkeypatch):
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")
    Image.fromarray(data.astronaut()).resize((256, 256)).save(tmp_path / "astronaut.png")
    Image.fromarray(data.stereo_motorcycle()[0]).resize((240, 160)).save(tmp_path / "motorcycle.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_an_example_for_every_endpoint_and_the_mcp_tools():
    code = "\n".join(python_blocks(README.read_text(encoding="utf-8")))
    for name in (*(f"/{workflow}" for workflow in CASES), "/estimate_depth", "/recipe", "call_tool"):
        assert name in code, name


def test_the_readme_python_examples_run_in_order(mcp_server, reader_folder, capsys):
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    namespace: dict = {"__name__": "__readme__"}
    for index, block in enumerate(blocks):
        source = block.replace(README_URL, mcp_server)
        code = compile(source, f"README.md python block {index + 1}", "exec")
        try:  # in a thread of its own, as in a fresh interpreter: no event loop running (Playwright's is here)
            with ThreadPoolExecutor(1) as pool:
                pool.submit(exec, code, namespace).result()
        except Exception as exc:
            pytest.fail(f"README python block {index + 1} failed: {type(exc).__name__}: {exc}\n{block}")
    printed = capsys.readouterr().out
    assert "Seed 42" in printed  # the Basic example's summary
    assert "scheduler: 'DPM++ 2M Karras'" in printed  # the recipe read back from result.png
    assert "/gradio_api/file=" in printed  # the MCP example's result URL
    assert Image.open(reader_folder / "result.png").info.get("img2img-studio")


def readme_table() -> dict[str, tuple[list[str], list[str]]]:
    """endpoint -> (parameter names, result names) from the README's API table."""
    table = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `/"):
            continue
        endpoint, required, optional, returns = (cell.strip() for cell in line.strip("|").split("|"))
        names = [name.strip() for name in required.strip("`").split(",") if name.strip()]
        if optional.startswith("the same eight"):  # Basic's eight parameters come first
            names = [
                "image",
                "prompt",
                "negative_prompt",
                "model",
                "strength",
                "guidance_scale",
                "num_inference_steps",
                "seed",
            ]
        names += re.findall(r"`(\w+)`", optional)
        table[endpoint.strip("`")] = (names, [name.strip() for name in returns.strip("`").split(",")])
    return table


def test_the_readme_api_table_is_the_served_api(client):
    served = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    table = readme_table()
    assert set(table) == set(served)
    for endpoint, (parameters, returns) in table.items():
        info = served[endpoint]
        names = [p["parameter_name"] for p in info["parameters"]]
        assert parameters == names, endpoint
        required = [p["parameter_name"] for p in info["parameters"] if not p["parameter_has_default"]]
        assert required == parameters[: len(required)], endpoint
        from gradio_client.utils import sanitize_parameter_names

        assert [sanitize_parameter_names(r["label"]) for r in info["returns"]] == returns, endpoint
