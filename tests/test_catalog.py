import pytest

from engine.models.catalog import CATALOG, get_spec, models_for


def test_guide_checkpoints_are_named():
    ids = {spec.hub_id for spec in CATALOG.values()}
    assert {
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "stabilityai/stable-diffusion-xl-refiner-1.0",
        "kandinsky-community/kandinsky-2-2-decoder",
        "kandinsky-community/kandinsky-2-2-prior",
        "ogkalu/Comic-Diffusion",
        "kohbanye/pixel-art-style",
        "nitrosocke/elden-ring-diffusion",
        "stabilityai/sd-x2-latent-upscaler",
        "stabilityai/stable-diffusion-x4-upscaler",
        "lllyasviel/control_v11f1p_sd15_depth",
    } <= ids


def test_basic_models_and_their_defaults():
    assert {"sd15", "sdxl-refiner", "kandinsky22"} <= set(models_for("img2img"))
    assert get_spec("sdxl-refiner").defaults.strength == 0.5
    assert get_spec("kandinsky22").defaults.strength == 0.3
    assert get_spec("kandinsky22").size_multiple == 64
    assert get_spec("comic-diffusion").trigger_words == "charliebo artstyle"
    assert get_spec("kandinsky22").weighting_unavailable_reason
    assert get_spec("sd15").weighting_unavailable_reason is None


def test_unknown_key_lists_known_ones():
    with pytest.raises(ValueError, match=r"model must be one of sd15, .*kandinsky22.*; got 'sd2'"):
        get_spec("sd2")
