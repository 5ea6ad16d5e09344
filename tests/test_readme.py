"""The README's and docs/ pages' examples, run or checked as a reader would use them, against the app in tiny mode.

Each ```python block of README.md and of every docs/*.md page is executed as written, a page's blocks in
order in one namespace (a reader follows one page), with only the server address changed to the test
server's; the files they name (cat.png, astronaut.png, motorcycle.png) are the scikit-image photos in the
working folder, and result.png is what the Basic example saves. An example that drifts from the API (a
wrong number of results, a parameter that is gone) fails here. Each ```bash block's commands are checked
without running them: `python app.py` flags parse, `python -m` modules exist, `pip install -r` files exist.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec
from pathlib import Path

import pytest
from PIL import Image
from workflow_cases import CASES

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
API_PAGE = ROOT / "docs" / "api.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]  # what a reader is sent to from the README
README_URL = "http://127.0.0.1:7860/"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def js_blocks(text: str) -> list[str]:
    return re.findall(r"^```js\n(.*?)^```", text, flags=re.S | re.M)


def bash_blocks(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def page_blocks() -> list[tuple[Path, list[str]]]:
    """(page, its python blocks) for every page that has any, README first."""
    pages = [(page, python_blocks(page.read_text(encoding="utf-8"))) for page in PAGES]
    return [(page, blocks) for page, blocks in pages if blocks]


@pytest.fixture()
def reader_folder(tmp_path, monkeypatch):
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")
    Image.fromarray(data.astronaut()).resize((256, 256)).save(tmp_path / "astronaut.png")
    Image.fromarray(data.stereo_motorcycle()[0]).resize((240, 160)).save(tmp_path / "motorcycle.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_docs_have_an_example_for_every_endpoint_and_the_mcp_tools():
    code = "\n".join(block for _page, blocks in page_blocks() for block in blocks)
    for name in (*(f"/{workflow}" for workflow in CASES), "/estimate_depth", "/recipe", "call_tool"):
        assert name in code, name


def test_the_docs_python_examples_run_in_order(mcp_server, reader_folder, capsys):
    pages = page_blocks()
    assert sum(len(blocks) for _page, blocks in pages) >= 6
    for page, blocks in pages:
        namespace: dict = {"__name__": "__readme__"}
        name = page.relative_to(ROOT)
        for index, block in enumerate(blocks):
            source = block.replace(README_URL, mcp_server)
            code = compile(source, f"{name} python block {index + 1}", "exec")
            try:  # in a thread of its own, as in a fresh interpreter: no event loop running (Playwright's is here)
                with ThreadPoolExecutor(1) as pool:
                    pool.submit(exec, code, namespace).result()
            except Exception as exc:
                pytest.fail(f"{name} python block {index + 1} failed: {type(exc).__name__}: {exc}\n{block}")
    printed = capsys.readouterr().out
    assert "Seed 42" in printed  # the Basic example's summary
    assert "scheduler: 'DPM++ 2M Karras'" in printed  # the recipe read back from result.png
    assert "/gradio_api/file=" in printed  # the MCP example's result URL
    assert Image.open(reader_folder / "result.png").info.get("img2img-studio")


JS_CLIENT = ROOT / "tests" / "js"  # @gradio/client at the version its package-lock.json names


@pytest.fixture()
def node_modules(reader_folder) -> Path:
    """The reader's folder, where Node finds @gradio/client as `npm install` would have put it there."""
    installed = JS_CLIENT / "node_modules" / "@gradio" / "client"
    if shutil.which("node") is None or not installed.is_dir():
        message = "the JavaScript client needs Node.js and `npm ci --prefix tests/js` (.ci/run does both)"
        if os.environ.get("STUDIO_JS") == "required":  # .ci/run: fail, never skip
            pytest.fail(message)
        pytest.skip(message)
    (reader_folder / "node_modules").symlink_to(JS_CLIENT / "node_modules")
    return reader_folder


def test_the_docs_javascript_example_runs_on_node_with_gradio_client(server, node_modules):
    """@gradio/client 2.7 sends a Blob as a file named "blob" and reads results by URL: the /recipe of its
    download must read as a PNG the app wrote, and the recipe must be JSON that JSON.parse takes."""
    (block,) = [block for _page, blocks in ((page, js_blocks(page.read_text())) for page in PAGES) for block in blocks]
    script = node_modules / "example.mjs"
    script.write_text(block.replace(README_URL, server), encoding="utf-8")
    ran = subprocess.run(["node", script.name], cwd=node_modules, capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stderr
    printed = ran.stdout.strip().splitlines()
    assert printed[0].startswith("Seed 42 · "), ran.stdout  # the summary
    assert printed[-1] == "a watercolor cat", ran.stdout  # the recipe read back from the downloaded PNG
    assert Image.open(node_modules / "result-js.png").info.get("img2img-studio")


def api_table() -> dict[str, tuple[list[str], list[str]]]:
    """endpoint -> (parameter names, result names) from the API page's table."""
    table = {}
    for line in API_PAGE.read_text(encoding="utf-8").splitlines():
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


def test_the_api_table_is_the_served_api(client):
    served = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    table = api_table()
    assert set(table) == set(served)
    for endpoint, (parameters, returns) in table.items():
        info = served[endpoint]
        names = [p["parameter_name"] for p in info["parameters"]]
        assert parameters == names, endpoint
        required = [p["parameter_name"] for p in info["parameters"] if not p["parameter_has_default"]]
        assert required == parameters[: len(required)], endpoint
        from gradio_client.utils import sanitize_parameter_names

        assert [sanitize_parameter_names(r["label"]) for r in info["returns"]] == returns, endpoint


def test_the_api_page_lists_every_model_basic_takes():
    """The catalog keys the API page gives for /img2img's `model` are the catalog's image-to-image models."""
    from engine.models.catalog import models_for

    text = " ".join(API_PAGE.read_text(encoding="utf-8").split())
    listed = re.search(r"Its `model` takes the catalog's keys \(([^:]*):", text)
    assert listed, "the API page no longer says which models /img2img takes"
    assert re.findall(r"`([\w.-]+)`", listed.group(1)) == models_for("img2img")


def shell_commands(text: str) -> list[str]:
    """Every command of the page's bash blocks: comments dropped, `&&` chains split."""
    commands = []
    for block in bash_blocks(text):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            commands += [part.strip() for part in line.split("&&") if part.strip() and not line.startswith("#")]
    return commands


def command_problem(command: str) -> str | None:
    """Why a documented command would fail as written, as far as can be told without running it."""
    from engine.base.settings import Settings

    words = shlex.split(command)
    environ = {}
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        environ[key] = value
    if words[:2] == ["python", "app.py"]:
        try:
            Settings.from_cli(words[2:], environ={k: v for k, v in environ.items() if k.startswith("STUDIO_")})
        except SystemExit:
            return "app.py refuses these flags"
    elif words[:2] in (["python", "-m"], ["python3", "-m"]):
        if find_spec(words[2]) is None:
            return f"no module {words[2]}"
    elif words[:3] == ["pip", "install", "-r"] and not (ROOT / words[3]).is_file():
        return f"no file {words[3]}"
    return None


def test_the_docs_shell_commands_name_flags_modules_and_files_that_exist(capsys):
    checked = {}
    for page in PAGES:
        for command in shell_commands(page.read_text(encoding="utf-8")):
            checked[command] = command_problem(command)
    capsys.readouterr()  # argparse's usage lines
    assert "pip install -r requirements.txt" in checked and "python app.py" in checked  # the quick start
    assert sum("python app.py --" in command for command in checked) >= 4
    assert {command: problem for command, problem in checked.items() if problem} == {}


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_docs_links_and_pictures_point_at_files_and_headings_that_exist():
    """Every relative link and image of the README and docs/ (the screenshots, one page's section from another)."""
    broken, checked = [], 0
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            checked += 1
            if not linked.is_file():
                broken.append(f"{page.name}: {target}")
            elif anchor:
                headings = re.findall(r"^#+ (.*)$", linked.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {github_anchor(heading) for heading in headings}:
                    broken.append(f"{page.name}: {target}")
    assert checked >= 20
    assert broken == []
