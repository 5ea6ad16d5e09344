"""AUTOMATIC1111 web UI infotexts into Basic's fields: what maps, translated; what does not, said.

An infotext (a web UI PNG's `parameters` chunk, or text pasted from it) names its sampler, size and
checkpoint in the web UI's terms and weights its prompt in the web UI's syntax. Here the sampler
becomes a scheduler (engine.pipelines.schedulers), known checkpoint names become catalog keys, `(word:1.2)`,
`(word)` and `[word]` become Compel's `(word)1.2`, `(word)1.1` and `(word)0.9`, `<lora:name:0.8>` becomes the
owner's LoRA of that name where one is offered (engine.pipelines.lora), and every field that has no counterpart (other
LoRAs, Clip skip, hashes, hires fix, ...) is listed in a note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.models.catalog import CATALOG, get_spec, models_for, owner_models
from engine.models.loras import offered
from engine.pipelines.schedulers import check_scheduler, lookup, sampler_name
from engine.recipes.recipe import parse_infotext

# Checkpoint names the web UI writes for the catalog's models (its file names and the Hub repos'
# names, which is what this app writes in `Model:`), lower-cased.
MODEL_ALIASES = {
    "v1-5-pruned-emaonly": "sd15",
    "v1-5-pruned": "sd15",
    "sd-v1-5": "sd15",
    "sd-v1-5-inpainting": "sd15-inpainting",  # runwayml's file name, as the web UI writes it
    "sd_xl_refiner_1.0": "sdxl-refiner",
    "comic-diffusion-v2": "comic-diffusion",
    "eldenring-v3-pruned": "elden-ring",
    # the single files the newer repositories publish, as ComfyUI and Forge name the checkpoint
    "sd_xl_base_1.0": "sdxl-base",
    "sd3.5_medium": "sd35-medium",
    "flux1-schnell": "flux-schnell",
    "flux1-dev": "flux-dev",
}
SEED_END = 2**32  # the app's seeds: [0, 2^32)
# Sampler names of ComfyUI, InvokeAI, NovelAI and Fooocus, as the web UI names them (a trailing _gpu, Fooocus's,
# and NovelAI's k_ prefix are dropped first). With a "karras" schedule the web UI's name gains " Karras".
SAMPLERS = {
    "euler": "Euler",
    "euler_ancestral": "Euler a",
    "euler_a": "Euler a",
    "heun": "Heun",
    "lms": "LMS",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_k": "DPM++ 2M Karras",  # InvokeAI
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_k": "DPM++ 2M SDE Karras",
    "dpmpp_sde": "DPM++ SDE",
    "ddim": "DDIM",
    "pndm": "PLMS",
    "plms": "PLMS",
    "uni_pc": "UniPC",
    "unipc": "UniPC",
    "deis": "DEIS",
}
# ComfyUI's schedulers, as the savers that write a web UI infotext join them to the sampler: euler_ancestral_karras
COMFYUI_SCHEDULES = ("karras", "normal", "simple", "exponential", "sgm_uniform", "beta", "ddim_uniform")
WEBUI_EMPHASIS = 1.1  # the web UI's factor for one pair of () or []
LORA_TAG = re.compile(r"<(lora|lyco|hypernet):[^>]{1,200}>", re.IGNORECASE)
# Fields Basic reads directly; the rest of an infotext is listed as not mapped.
USED_FIELDS = {
    "prompt",
    "negative_prompt",
    "num_inference_steps",
    "guidance_scale",
    "seed",
    "strength",
    "sampler",
    "model",
    "width",
    "height",
    "Workflow",
}


@dataclass
class BasicFields:
    """The Basic controls an infotext fills (None: leave the control as it is), and notes for the person;
    `values["size"]` is the (width, height) the web UI made, which Basic makes with Output size "Resize to"."""

    values: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def tool_sampler(name: object, schedule: object = None) -> str | None:
    """The web UI's name for another tool's sampler (and schedule), or None when it has none."""
    if not isinstance(name, str):
        return None
    key = name.lower().removeprefix("sample_").removeprefix("k_").removesuffix("_gpu")
    found = SAMPLERS.get(key)
    if found and isinstance(schedule, str) and schedule.lower() == "karras" and not found.endswith("Karras"):
        found += " Karras"
    return found


def joined_sampler(name: str) -> str | None:
    """The web UI's name for a sampler and schedule written as one: ComfyUI's savers' `euler_ancestral_karras`,
    Stability Matrix's `Euler Ancestral Karras`; None when it is neither."""
    key = name.strip().lower().replace(" ", "_")
    for schedule in COMFYUI_SCHEDULES:
        if key.endswith("_" + schedule):
            return tool_sampler(key[: -len(schedule) - 1], schedule)
    return tool_sampler(key)


def _offered_lora(tag: str, loras: list[str]) -> bool:
    """Adds `name:weight` to `loras` for a `<lora:name:weight>` tag the owner offers a LoRA for."""
    kind, _, rest = tag[1:-1].partition(":")
    name, _, weight = rest.partition(":")
    weight = weight.partition(":")[0].strip() or "1"  # <lora:name:unet weight:text weight>: the first
    if kind.lower() != "lora" or name.strip() not in offered():
        return False
    try:
        loras.append(f"{name.strip()}:{float(weight):g}")
    except ValueError:
        return False
    return True


def model_key(name: str) -> str | None:
    """The catalog key for a web UI checkpoint name (with or without extension and [hash]), if known."""
    text = re.sub(r"\s*\[[0-9a-fA-F]{6,}\]$", "", name.strip())
    text = re.sub(r"\.(safetensors|ckpt|pt|bin)$", "", text, flags=re.IGNORECASE).lower()
    names = {key: key for key in CATALOG}
    names |= {spec.hub_id.rsplit("/", 1)[-1].lower(): key for key, spec in CATALOG.items()}
    # the owner's checkpoint files by their name, as the web UI writes it (my-model.safetensors -> my-model)
    names |= {Path(spec.file).stem.lower(): spec.key for spec in owner_models().entries.values() if spec.file}
    return (names | MODEL_ALIASES).get(text)


_WEBUI_WEIGHTS = re.compile(r"(?<!\\)[\(\[]")  # (word:1.2), (word), [word]
_COMPEL_WEIGHTS = re.compile(r"(?<!\\)[\(\[]|\w[+-]+(?![\w+-])")  # (word)1.2, word++, word-
_WEIGHT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*")  # unambiguous, so matching it is linear


def to_compel(prompt: str, kept: list[str] | None = None) -> str:
    """The web UI's emphasis syntax as Compel's: `(a:1.3)` -> `(a)1.3`, `(a)` -> `(a)1.1`,
    `[a]` -> `(a)0.91`, nested pairs multiplied as the web UI does; `\\(` stays a literal bracket, `\\[` becomes `[`
    (Compel reads square brackets as text).
    Unbalanced brackets are left as typed (the web UI treats them as text too). Prompt editing and
    alternation (`[from:to:when]`, `[a|b]`), which Compel has no counterpart for, are left as typed too, and
    the first few are added to `kept` (cut to 60 characters) so the caller can say so.

    One pass, linear in the prompt's length: a closing bracket looks only at what its group holds after
    its last colon at its own level (an explicit weight holds no bracket), so no character is read twice.
    """
    out: list[str] = []
    # per open group: its bracket, the index of its slot in out, the index in out of its last colon
    # (None once a nested group closes after it: `(a:1 (b))` has no explicit weight)
    stack: list[list] = []
    i = 0
    while i < len(prompt):
        char = prompt[i]
        item = prompt[i : i + 2] if char == "\\" and i + 1 < len(prompt) else char
        i += len(item)
        if item in ("\\[", "\\]"):  # a square bracket that is text: Compel reads square brackets as text
            out.append(item[1])
        elif item in ("(", "["):
            stack.append([item, len(out), None, False])
            out.append(item)
        elif item in (")", "]") and stack and stack[-1][0] == "([)]"[")]".index(item)]:
            opening, slot, colon, editing = stack.pop()
            if opening == "[" and editing:  # [from:to:when] or [a|b]: no Compel counterpart, kept as typed
                out.append(item)
                if kept is not None and len(kept) < 3:
                    kept.append("".join(out[slot : slot + 60])[:60])
                if stack:
                    stack[-1][2] = None
                continue
            weight = WEBUI_EMPHASIS if opening == "(" else 1 / WEBUI_EMPHASIS
            explicit = _WEIGHT.fullmatch("".join(out[colon + 1 :])) if opening == "(" and colon is not None else None
            if explicit:
                weight = float(explicit.group(1))
                out[colon:] = [out[colon][:-1]] if out[colon] != ":" else []  # `\\:` keeps its backslash, as typed
            out[slot] = "("
            out.append(f"){weight:.3g}")
            if stack:
                stack[-1][2] = None
        else:
            if ":" in item and stack:
                stack[-1][2] = len(out)
            if item in (":", "|") and stack:
                stack[-1][3] = True
            out.append(item)
    return "".join(out)


def basic_fields(text: str) -> BasicFields:
    """Basic's fields from an infotext, with a note for everything that did not map.

    Raises:
        ValueError: not an infotext (empty, too long, a known field of the wrong type).
    """
    return fields_from(parse_infotext(text))


def fields_from(parsed: dict, *, weighting: str = "webui") -> BasicFields:
    """Basic's fields from what a tool wrote, in parse_infotext's names (prompt, negative_prompt, strength,
    guidance_scale, num_inference_steps, seed, sampler, model, width, height; anything else is listed as not
    mapped). `weighting`: the prompts' syntax, "webui" ((word:1.2), translated) or "compel" (InvokeAI's, kept)."""
    result = BasicFields()
    values = result.values
    for name in ("prompt", "negative_prompt", "strength", "guidance_scale", "num_inference_steps", "seed"):
        values[name] = parsed.get(name)
    if values["seed"] is not None and not 0 <= values["seed"] < SEED_END:
        result.notes.append(f"Seed {values['seed']} is outside the app's seeds [0, 2^32): Basic's seed is kept.")
        values["seed"] = None
    model = None
    if "model" in parsed:
        model = model_key(parsed["model"])
        if model is None:
            result.notes.append(f"Model {parsed['model']!r} is not one of the app's models; the Basic model is kept.")
        elif model not in models_for("img2img"):
            result.notes.append(f"Model {parsed['model']!r} ({model}) does not run img2img; the Basic model is kept.")
            model = None
    values["model"] = model
    target = model or "sd15"
    schedule = parsed.pop("Schedule type", None)  # web UI 1.9+, Forge: "Sampler: DPM++ 2M, Schedule type: Karras"
    if "sampler" in parsed and schedule and schedule.lower() not in ("automatic", "uniform"):
        joined = f"{parsed['sampler']} {schedule}"
        if lookup(joined) is not None:
            parsed["sampler"] = joined
        else:
            result.notes.append(
                f"Schedule type {schedule!r} has no counterpart here; the sampler's own schedule is used."
            )
    if "sampler" in parsed and lookup(parsed["sampler"]) is None:
        parsed["sampler"] = joined_sampler(parsed["sampler"]) or parsed["sampler"]
    if "sampler" in parsed:
        try:
            values["scheduler"] = check_scheduler(parsed["sampler"], target)
        except ValueError:
            own = sampler_name(get_spec(target).scheduler, {}) == parsed["sampler"]  # FLUX's Euler, as written
            why = "does not fit" if lookup(parsed["sampler"]) else "has no diffusers counterpart here for"
            if not own:
                label = get_spec(target).label
                result.notes.append(f"Sampler {parsed['sampler']!r} {why} {label}; its own scheduler is kept.")
    if "width" in parsed:  # the web UI's img2img makes this size from any init (its default mode: Just resize)
        values["size"] = (parsed["width"], parsed["height"])
    loras: list[str] = []
    for name in ("prompt", "negative_prompt"):
        text_value = values[name] or ""
        tags = [match.group(0) for match in LORA_TAG.finditer(text_value)]
        missing = [tag for tag in tags if not _offered_lora(tag, loras)]
        if missing:
            result.notes.append(f"{name}: {', '.join(missing)} removed: no LoRA of that name is offered here.")
        if tags:
            text_value = re.sub(r"\s+,", ",", re.sub(r"\s{2,}", " ", LORA_TAG.sub("", text_value)))
            text_value = re.sub(r",(\s*,)+", ",", text_value).strip(" ,")  # the commas between removed tags
        values[name] = text_value
    if loras:
        values["loras"] = ", ".join(loras)
        result.notes.append(f"LoRAs applied with their weights: {values['loras']}.")
    syntax = _COMPEL_WEIGHTS if weighting == "compel" else _WEBUI_WEIGHTS
    weighted = any(syntax.search(values[name]) for name in ("prompt", "negative_prompt"))
    reason = get_spec(target).weighting_unavailable_reason
    if weighted and reason:
        result.notes.append(f"The prompt's (word:1.2) / [word] weighting is kept as text: {reason}.")
    elif weighted and weighting == "compel":
        values["weighted_prompt"] = True
        result.notes.append("The prompt's weighting is Compel syntax already: kept as written.")
    elif weighted:
        kept: list[str] = []
        for name in ("prompt", "negative_prompt"):
            values[name] = to_compel(values[name], kept)
        values["weighted_prompt"] = True
        result.notes.append("The web UI's (word:1.2) / [word] weighting is translated to Compel syntax.")
        if kept:
            shown = ", ".join(repr(group) for group in kept)
            result.notes.append(
                f"Prompt editing and alternation ([from:to:when], [a|b]) have no counterpart here: {shown} kept as "
                "typed, read as plain words."
            )
    unmapped = [f"{key}: {value}" for key, value in parsed.items() if key not in USED_FIELDS]
    if unmapped:
        result.notes.append("Not mapped (no counterpart in Basic): " + "; ".join(unmapped) + ".")
    return result
