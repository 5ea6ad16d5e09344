"""The lock (requirements*.txt, compiled by `python -m tools.lock`) agrees with the ranges in pyproject.toml: every
range has a pin, every pin is inside its range, every line is one exact version with hashes, and the app's locks
hold only versions the dev lock (what CI installs and tests) holds."""

from __future__ import annotations

import re

import pytest

from tools.latest import failures, moved
from tools.lock import LOCKS, ROOT, ZEROGPU_PINS, disagreements, read_pins

BY_FILE = {lock.file: lock for lock in LOCKS}


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.file)
def test_every_lock_pins_each_range_inside_it(lock):
    pins = read_pins(ROOT / lock.file)
    assert disagreements(lock, pins) == []
    assert {"torch", "diffusers", "transformers", "peft", "gradio"} <= set(pins)


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.file)
def test_every_lock_says_how_it_is_refreshed(lock):
    assert "python -m tools.lock" in (ROOT / lock.file).read_text().split("\n\n", 1)[0]


def test_the_app_locks_hold_only_what_ci_installed():
    tested = read_pins(ROOT / "requirements-dev.txt")
    for name in ("requirements.txt", "requirements-ray.txt"):
        for package, versions in read_pins(ROOT / name).items():
            assert versions == tested[package], f"{name}: {package} {versions} differs from requirements-dev.txt"


def test_the_zerogpu_lock_holds_zerogpus_torch_for_python_3_12_on_linux():
    pins = read_pins(ROOT / "requirements-zerogpu.txt")
    for pin in ZEROGPU_PINS:
        name, version = pin.split("==")
        assert pins[name] == {version: ""}  # one version, no marker: the lock is for that one platform
    assert "ray" not in pins and "pytest" not in pins  # the app alone, as a Space installs it


def test_a_pin_outside_its_range_and_a_range_without_a_pin_are_named(tmp_path):
    """The check itself: a lock edited by hand (transformers moved past its range, peft dropped) is refused with
    both disagreements named."""
    text = (ROOT / "requirements.txt").read_text()
    text = re.sub(r"^transformers==[^ ;\\]+", "transformers==6.0.0", text, flags=re.M)
    text = re.sub(r"^peft==.*?(?=^\S)", "", text, flags=re.M | re.S)
    (tmp_path / "requirements.txt").write_text(text)
    found = disagreements(BY_FILE["requirements.txt"], read_pins(tmp_path / "requirements.txt"))
    assert found == [
        "requirements.txt: transformers==6.0.0 is outside its range <6,>=5.0",
        "requirements.txt: peft<1,>=0.17 has no pin",
    ]


def test_a_zerogpu_lock_with_another_torch_is_named(tmp_path):
    text = re.sub(r"^torch==[^ ;\\]+", "torch==2.14.1", (ROOT / "requirements-zerogpu.txt").read_text(), flags=re.M)
    (tmp_path / "lock.txt").write_text(text)
    found = disagreements(BY_FILE["requirements-zerogpu.txt"], read_pins(tmp_path / "lock.txt"))
    assert found == ["requirements-zerogpu.txt: torch==2.11.0 asked for, ['2.14.1'] held"]


@pytest.mark.parametrize(
    "line", ["torch>=2.6 \\\n    --hash=sha256:00", "torch==2.14.1", "torch==2.14.1,<3 --hash=sha256:00"]
)
def test_a_line_that_is_not_one_exact_version_with_hashes_is_refused(tmp_path, line):
    (tmp_path / "lock.txt").write_text(line + "\n")
    with pytest.raises(ValueError, match=r"lock\.txt: 'torch.*' is not one exact version with hashes"):
        read_pins(tmp_path / "lock.txt")


def test_what_installs_the_app_names_a_lock():
    """The README's two commands, .ci/run and the Ray section install lock files, not ranges."""
    readme = (ROOT / "README.md").read_text()
    assert "pip install -r requirements.txt && python app.py" in readme
    assert "pip install -r requirements-dev.txt && python -m pytest" in readme
    assert "pip install --quiet -r requirements-dev.txt" in (ROOT / ".ci" / "run").read_text()
    assert "pip install -r requirements-ray.txt" in (ROOT / "docs" / "deploying.md").read_text()
    testing = (ROOT / "docs" / "testing.md").read_text()  # its table says what each lock holds
    for lock in LOCKS:
        assert f"| `{lock.file}` |" in testing, f"docs/testing.md does not say what {lock.file} is for"


def test_the_latest_check_names_what_moved_and_what_broke():
    """tools.latest's report: the packages whose pins differ (upgraded, new, gone) and pytest's failure lines."""
    old = {"peft": {"0.21.2": ""}, "transformers": {"5.23.0": ""}, "gone": {"1.0": ""}}
    new = {"peft": {"0.21.2": ""}, "transformers": {"5.25.0": ""}, "fresh": {"2.0": ""}}
    assert moved(old, new) == ["fresh: (new) -> 2.0", "gone: 1.0 -> (gone)", "transformers: 5.23.0 -> 5.25.0"]
    assert moved(old, old) == []
    output = (
        "....E.F\n"
        "FAILED tests/test_lora.py::test_one - ValueError: The version of PEFT you are using is not compatible\n"
        "ERROR tests/test_owner_models.py::test_two - ValueError: ...\n"
        "1 failed, 5 passed, 1 error in 3.2s"
    )
    assert [line.split(" - ")[0] for line in failures(output)] == [
        "FAILED tests/test_lora.py::test_one",
        "ERROR tests/test_owner_models.py::test_two",
    ]
