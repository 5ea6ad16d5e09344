from pathlib import Path

import pytest

from engine.base.settings import Settings, build_parser


def test_defaults_and_env_override():
    s = Settings.from_env({"STUDIO_PORT": "9000", "STUDIO_MODELS": "tiny", "STUDIO_COMPILE": "yes"})
    assert (s.port, s.models, s.compile, s.host) == (9000, "tiny", True, "127.0.0.1")


def test_cli_wins_over_env():
    s = Settings.from_cli(["--models", "hub", "--port", "7000", "--offload", "model"], {"STUDIO_MODELS": "tiny"})
    assert (s.models, s.port, s.offload) == ("hub", 7000, "model")


def test_spaces_host_fallback():
    assert Settings.from_env({"GRADIO_SERVER_NAME": "0.0.0.0"}).host == "0.0.0.0"
    assert Settings.from_env({"GRADIO_SERVER_NAME": "0.0.0.0", "STUDIO_HOST": "127.0.0.2"}).host == "127.0.0.2"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STUDIO_PORT": "abc"}, "STUDIO_PORT must be a int, got 'abc'"),
        ({"STUDIO_MODELS": "cloud"}, "STUDIO_MODELS must be one of auto, hub, tiny, got 'cloud'"),
        ({"STUDIO_CACHE_GB": "nan"}, "STUDIO_CACHE_GB must be a float"),
        ({"STUDIO_COMPILE": "maybe"}, "STUDIO_COMPILE must be a bool"),
    ],
)
def test_bad_env_names_the_variable(env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_every_flag_of_the_issue_exists():
    flags = {a.option_strings[0] for a in build_parser()._actions if a.option_strings}
    assert {"--host", "--port", "--models", "--offload", "--compile"} <= flags
    assert Settings.from_cli(["--data-dir", "/tmp/x"], {}).data_dir == Path("/tmp/x")


def test_auto_mode_uses_the_hub_only_when_it_answers(monkeypatch):
    from engine.core import resolve_mode

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *args, **kwargs: None)
    auto = Settings.from_env({}, models="auto")
    assert resolve_mode(auto, probe_hub=lambda: True) == "hub"
    assert resolve_mode(auto, probe_hub=lambda: False) == "tiny"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_mode(auto, probe_hub=lambda: True) == "tiny", "offline never probes"
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *args, **kwargs: "/cache/model_index.json")
    assert resolve_mode(auto, probe_hub=lambda: False) == "hub", "cached weights count as available"
    assert resolve_mode(Settings.from_env({}, models="tiny"), probe_hub=lambda: True) == "tiny"


def test_help_lists_every_env_var_the_readme_table_names():
    """docs/running.md says every flag and limit has an env var that `python app.py --help` lists: all of them."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    shown = subprocess.run(
        [sys.executable, "app.py", "--help"], cwd=root, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    page = (root / "docs" / "running.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\| `(STUDIO_\w+)`", page, flags=re.M)
    assert len(documented) >= 20
    assert [name for name in documented if f"  {name}" not in shown] == []
    assert "STUDIO_MAX_STEPS=150" in shown and "GRADIO_MCP_SERVER" in shown
