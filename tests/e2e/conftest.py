"""Browser tests: the app launched in tiny mode on 127.0.0.1 (`python app.py`, as a person starts it),
driven by Playwright in Debian's chromium (never a browser Playwright downloads).

Without /usr/bin/chromium these tests are skipped, with the reason; `.ci/run` installs it and sets
STUDIO_E2E=required, which turns a missing browser into a failure. Screenshots go to
$STUDIO_SCREENSHOTS (docs/ regenerates the README's) or a temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ports import free_port, serving

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        reason = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("STUDIO_E2E") == "required":
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port()
    data = tmp_path_factory.mktemp("e2e-data")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_TEMP_DIR": str(data / "gradio"),  # its cache, emptied when it stops, is its own
        "STUDIO_PORT": str(port),
        # no STUDIO_MAX_PIXELS or steps: tiny mode on a CPU starts small and quick by itself
    }
    with serving(["--models", "tiny", "--host", "127.0.0.1", "--data-dir", str(data)], env, data / "app.log"):
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="session")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def opened(browser, app_url, width: int, height: int):
    """A fresh page of the app in a window of this size, once its tabs are there (close its context after)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(app_url)
    page.get_by_role("tab", name="Basic").wait_for()
    return page


@pytest.fixture()
def page(browser, app_url):
    page = opened(browser, app_url, 1400, 1000)
    yield page
    page.context.close()


@pytest.fixture()
def phone(browser, app_url):
    """The app on a phone's screen (390x844)."""
    page = opened(browser, app_url, 390, 844)
    yield page
    page.context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("STUDIO_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
