"""What other tools write into their images, read as Basic's fields: ComfyUI's API graph, InvokeAI's, NovelAI's and
Fooocus's JSON. The web UI's infotext is engine.recipes.webui's; these give it the same names
(`engine.recipes.webui.fields_from`), so the model, sampler, LoRA tag and weighting rules are one piece of code.

Every value is read as data: a JSON document capped in size, numbers checked for their type, nodes of a graph
only followed by the links they name; what is not understood is said in a note, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.recipes.webui import SEED_END, BasicFields, fields_from, tool_sampler

__all__ = ["SEED_END", "foreign_fields", "is_json_parameters", "tool_sampler"]

MAX_JSON_CHARS = 1_000_000


def _json(text: object, name: str) -> Any:
    if not isinstance(text, str) or len(text) > MAX_JSON_CHARS:
        raise ValueError(f"image's {name} text is not JSON of at most {MAX_JSON_CHARS:,} characters")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"image's {name} text is not valid JSON: {str(exc)[:120]}") from None


def _json_dict(text: object, name: str) -> dict:
    """A chunk's JSON that must be an object (a tool's metadata), refused naming the tool's chunk otherwise."""
    data = _json(text, name)
    if not isinstance(data, dict):
        raise ValueError(f"image's {name} text is not a JSON object")
    return data


def _number(value: object, kind: type) -> Any:
    """A JSON number as `kind` (int or float), or None for anything else (text, a list, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 30:
            value = int(value)  # Fooocus writes its seed as text
        else:
            return None
    return kind(value) if kind is float or float(value).is_integer() else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _seeded(parsed: dict, seed: object, notes: list[str]) -> None:
    number = _number(seed, int)
    if number is None:
        return
    if 0 <= number < SEED_END:
        parsed["seed"] = number
    else:
        notes.append(f"Seed {number} is outside the app's seeds [0, 2^32): Basic's seed is kept.")


def _with_notes(parsed: dict, notes: list[str], *, weighting: str = "webui") -> BasicFields:
    """Basic's fields from what a reader found (None: not in the file), its notes first."""
    parsed = {key: value for key, value in parsed.items() if value is not None}
    for name in ("prompt", "negative_prompt"):
        parsed[name] = parsed.get(name, "").strip()
    fields = fields_from(parsed, weighting=weighting)
    fields.notes[:0] = notes
    return fields


# -- ComfyUI ------------------------------------------------------------------------------------------------

SAMPLER_NODES = {"KSampler": ("seed", True), "KSamplerAdvanced": ("noise_seed", False)}  # seed input, has denoise
# the custom samplers, whose values sit in the nodes they link to (noise, guider, sampler, sigmas)
CUSTOM_SAMPLER_NODES = ("SamplerCustomAdvanced", "SamplerCustom")
# what those linked nodes hold, as KSampler's inputs name it: node type -> {their input: KSampler's}
CUSTOM_PARTS = {
    "RandomNoise": {"noise_seed": "seed"},
    "CFGGuider": {"cfg": "cfg", "positive": "positive", "negative": "negative", "model": "model"},
    "BasicGuider": {"conditioning": "positive", "model": "model"},
    "KSamplerSelect": {"sampler_name": "sampler_name"},
    "BasicScheduler": {"scheduler": "scheduler", "steps": "steps", "denoise": "denoise", "model": "model"},
}
TEXT_NODES = {
    "CLIPTextEncode": "text",
    "CLIPTextEncodeSDXL": "text_g",
    "CLIPTextEncodeSDXLRefiner": "text",
    "smZ CLIPTextEncode": "text",  # Civitai's generator
    "Power Prompt (rgthree)": "prompt",
}
# the input that holds the value of a node a text or seed input links to (a text box, a seed or primitive node)
VALUE_INPUTS = ("value", "text", "Text", "string", "seed", "prompt")
# nodes whose text a language model writes when the graph runs: node type -> the input that asks for it
GENERATED_TEXT = {"TextGenerate": "prompt"}
# nodes a text or a value passes through on its way to a text-encode or sampler node (_value follows them)
PASSING = ("ComfySwitchNode", "PreviewAny", "StringConcatenate")
CHECKPOINT_NODES = ("CheckpointLoaderSimple", "CheckpointLoader", "ImageOnlyCheckpointLoader", "UNETLoader")
UNDERSTOOD = {
    *SAMPLER_NODES,
    *CUSTOM_SAMPLER_NODES,
    *CUSTOM_PARTS,
    "FluxGuidance",
    *TEXT_NODES,
    *CHECKPOINT_NODES,
    *GENERATED_TEXT,
    *PASSING,
    "LoraLoader",
    "LoraLoaderModelOnly",
    "VAEDecode",
    "VAEEncode",
    "SaveImage",
    "PreviewImage",
    "LoadImage",
    "EmptyLatentImage",
}


def _linked(graph: dict, value: object) -> tuple[str, dict] | None:
    """The node a link ([node id, output index]) names, or None for a value that is no link."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int):
        node = graph.get(str(value[0]))
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            return str(value[0]), node
    return None


def _value(graph: dict, value: object, notes: list[str] | None = None) -> object:
    """An input's value: as written, or where it is a link, the value of the node it names: a text box, a seed
    node, a primitive, through switches, previews and string concatenations (at most as many hops as the graph
    has nodes); None for a link to anything else. A text a language model writes at run time (TextGenerate) is
    not in the file: None, and `notes` says so."""
    for _ in range(len(graph)):
        found = _linked(graph, value)
        if found is None:
            return value
        key, node = found
        kind, inputs = node.get("class_type"), node["inputs"]
        if kind == "ComfySwitchNode":
            switch = _value(graph, inputs.get("switch"))
            value = inputs.get("on_true" if switch is True else "on_false") if isinstance(switch, bool) else None
        elif kind == "PreviewAny":
            value = inputs.get("source")
        elif kind == "StringConcatenate":
            parts = [_value(graph, inputs.get(name), notes) for name in ("string_a", "string_b")]
            joined = inputs.get("delimiter", "")
            return joined.join(parts) if all(isinstance(part, str) for part in (*parts, joined)) else None
        elif kind in GENERATED_TEXT:
            if notes is not None:
                asked = _value(graph, inputs.get(GENERATED_TEXT[kind]))
                tail = f", from a request that ends {asked[-80:]!r}" if isinstance(asked, str) and asked else ""
                notes.append(
                    f"Node {key} ({kind}) has a language model write the prompt at run time{tail}; the text it wrote "
                    "is not in the file: type the prompt yourself."
                )
            return None
        else:
            values = [inputs[name] for name in VALUE_INPUTS if name in inputs and _linked(graph, inputs[name]) is None]
            return values[0] if len(values) == 1 else None
    return None


def _sampler_inputs(graph: dict, node: dict) -> tuple[dict, str, bool]:
    """A sampler node's values as KSampler names them, its seed input's name, and whether it has a denoise: a
    custom sampler's are gathered from the nodes it links to (RandomNoise, CFGGuider or BasicGuider,
    KSamplerSelect, BasicScheduler; FluxGuidance's guidance as the cfg)."""
    kind = node["class_type"]
    if kind in SAMPLER_NODES:
        seed_input, has_denoise = SAMPLER_NODES[kind]
        return node["inputs"], seed_input, has_denoise
    inputs: dict = {key: value for key, value in node["inputs"].items() if key in ("noise_seed", "cfg", "model")}
    inputs |= {key: value for key, value in node["inputs"].items() if key in ("positive", "negative")}
    for link in node["inputs"].values():
        found = _linked(graph, link)
        parts = CUSTOM_PARTS.get(found[1].get("class_type", "")) if found else None
        for theirs, ours in (parts or {}).items():
            if found is not None and theirs in found[1]["inputs"]:
                inputs.setdefault("noise_seed" if ours == "seed" else ours, found[1]["inputs"][theirs])
    flux = _linked(graph, inputs.get("positive"))
    if flux is not None and flux[1].get("class_type") == "FluxGuidance":  # FLUX's distilled guidance
        inputs.setdefault("cfg", flux[1]["inputs"].get("guidance"))
        inputs["positive"] = flux[1]["inputs"].get("conditioning")
    return inputs, "noise_seed", True


def _prompt_text(graph: dict, link: object, notes: list[str]) -> str | None:
    """The text of the text-encode node a sampler's positive or negative input names."""
    found = _linked(graph, link)
    if found is None:
        return None
    _, node = found
    key = TEXT_NODES.get(node.get("class_type", ""))
    return _text(_value(graph, node["inputs"].get(key), notes)) if key else None


def _checkpoint(graph: dict, link: object, loras: list[str]) -> str | None:
    """The checkpoint a sampler's model input comes from, through LoRA loaders (added to `loras` as web UI
    tags); at most as many hops as the graph has nodes."""
    for _ in range(len(graph)):
        found = _linked(graph, link)
        if found is None:
            return None
        _, node = found
        kind, inputs = node.get("class_type"), node["inputs"]
        if kind in CHECKPOINT_NODES:
            return _text(inputs.get("ckpt_name") or inputs.get("unet_name"))
        if kind in ("LoraLoader", "LoraLoaderModelOnly"):
            name, weight = _text(inputs.get("lora_name")), _number(inputs.get("strength_model"), float)
            if name:
                stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                loras.append(f"<lora:{stem}:{1.0 if weight is None else weight:g}>")
        link = inputs.get("model")
    return None


def _is_node(node: object) -> bool:
    return isinstance(node, dict) and isinstance(node.get("class_type"), str)


def comfyui(chunks: dict[str, str]) -> BasicFields:
    """ComfyUI's API-format graph (its `prompt` chunk): the first sampler node's values, the prompts of the text
    nodes it names, the checkpoint (and LoRA loaders) behind its model; the node types not understood are named."""
    data = _json(chunks["prompt"], "ComfyUI prompt")
    # the nodes; Civitai adds "extra" and "extraMetadata" beside them
    graph = {key: node for key, node in data.items() if _is_node(node)} if isinstance(data, dict) else {}
    if not graph:
        raise ValueError("image's ComfyUI prompt text is not a graph of nodes")
    samplers = sorted(
        (
            key
            for key, node in graph.items()
            if node.get("class_type") in (*SAMPLER_NODES, *CUSTOM_SAMPLER_NODES)
            and isinstance(node.get("inputs"), dict)
        ),
        key=lambda key: (len(key), key),
    )
    notes: list[str] = ["A ComfyUI image: its graph is read; there is no recipe to replay exactly."]
    if not samplers:
        raise ValueError("image's ComfyUI graph has no KSampler node this app can read")
    if len(samplers) > 1:
        notes.append(f"The graph has {len(samplers)} sampler nodes: node {samplers[0]}'s values are read.")
    inputs, seed_input, has_denoise = _sampler_inputs(graph, graph[samplers[0]])
    loras: list[str] = []
    parsed: dict[str, Any] = {
        "prompt": _prompt_text(graph, inputs.get("positive"), notes) or "",
        "negative_prompt": _prompt_text(graph, inputs.get("negative"), notes) or "",
        "num_inference_steps": _number(_value(graph, inputs.get("steps")), int),
        "guidance_scale": _number(_value(graph, inputs.get("cfg")), float),
    }
    if has_denoise and _number(inputs.get("denoise"), float) is not None:  # a whole pass (1.0) is text-to-image
        parsed["strength"] = round(_number(inputs.get("denoise"), float), 4)
    _seeded(parsed, _value(graph, inputs.get(seed_input)), notes)
    sampler = tool_sampler(inputs.get("sampler_name"), inputs.get("scheduler"))
    if sampler:
        parsed["sampler"] = sampler
    elif inputs.get("sampler_name") is not None:
        notes.append(f"Sampler {inputs.get('sampler_name')!r} has no counterpart here; the model's own is kept.")
    checkpoint = _checkpoint(graph, inputs.get("model"), loras)
    if checkpoint:
        parsed["model"] = checkpoint
    if loras:
        parsed["prompt"] = f"{parsed['prompt']} {' '.join(loras)}".strip()
    unknown = sorted({str(n.get("class_type")) for n in graph.values()} - UNDERSTOOD)
    if unknown:
        notes.append(f"Nodes not understood (their effect is not in Basic): {', '.join(unknown[:12])}.")
    return _with_notes(parsed, notes)


# -- InvokeAI, NovelAI, Fooocus -----------------------------------------------------------------------------


def invokeai(chunks: dict[str, str]) -> BasicFields:
    """InvokeAI's `invokeai_metadata` JSON (its prompts are Compel syntax already)."""
    data = _json_dict(chunks["invokeai_metadata"], "InvokeAI metadata")
    notes = ["An InvokeAI image: its metadata is read; there is no recipe to replay exactly."]
    model = data.get("model")
    parsed: dict[str, Any] = {
        "prompt": _text(data.get("positive_prompt")) or "",
        "negative_prompt": _text(data.get("negative_prompt")) or "",
        "num_inference_steps": _number(data.get("steps"), int),
        "guidance_scale": _number(data.get("cfg_scale"), float),
        "strength": _number(data.get("strength"), float),
        "model": _text(model.get("model_name") or model.get("name")) if isinstance(model, dict) else None,
        "sampler": tool_sampler(data.get("scheduler")),
    }
    _seeded(parsed, data.get("seed"), notes)
    rest = {"generation_mode", "positive_prompt", "negative_prompt", "steps", "cfg_scale", "strength", "model"}
    rest |= {"scheduler", "seed", "width", "height", "rand_device", "positive_style_prompt", "negative_style_prompt"}
    extra = sorted(key for key, value in data.items() if key not in rest and value not in (None, "", [], 0, 0.0))
    if extra:
        notes.append(f"Not mapped (no counterpart in Basic): {', '.join(extra)}.")
    return _with_notes(parsed, notes, weighting="compel")


def novelai(chunks: dict[str, str]) -> BasicFields:
    """NovelAI's `Comment` JSON, with the prompt in `Description`."""
    data = _json_dict(chunks["Comment"], "NovelAI Comment")
    notes = ["A NovelAI image: its Comment is read; NovelAI's models are not the app's."]
    parsed: dict[str, Any] = {
        "prompt": _text(data.get("prompt")) or _text(chunks.get("Description")) or "",
        "negative_prompt": _text(data.get("uc")) or "",
        "num_inference_steps": _number(data.get("steps"), int),
        "guidance_scale": _number(data.get("scale"), float),
        "strength": _number(data.get("strength"), float),
        "sampler": tool_sampler(data.get("sampler")),
    }
    _seeded(parsed, data.get("seed"), notes)
    return _with_notes(parsed, notes)


def fooocus(chunks: dict[str, str]) -> BasicFields:
    """Fooocus's JSON `parameters` (its prompt as typed; the expanded one it ran is named in a note)."""
    data = _json_dict(chunks["parameters"], "Fooocus parameters")
    notes = ["A Fooocus image: its parameters are read; Fooocus expands the prompt and adds styles the app has not."]
    parsed: dict[str, Any] = {
        "prompt": _text(data.get("prompt")) or "",
        "negative_prompt": _text(data.get("negative_prompt")) or "",
        "num_inference_steps": _number(data.get("steps"), int),
        "guidance_scale": _number(data.get("guidance_scale"), float),
        "model": _text(data.get("base_model")),
        "sampler": tool_sampler(data.get("sampler"), data.get("scheduler")),
    }
    _seeded(parsed, data.get("seed"), notes)
    styles = _text(data.get("styles"))
    if styles and styles != "[]":
        notes.append(f"Styles {styles} are Fooocus's own: not applied.")
    return _with_notes(parsed, notes)


def swarmui(chunks: dict[str, str]) -> BasicFields:
    """SwarmUI's JSON `parameters` ({"sui_image_params": {...}})."""
    data = _json_dict(chunks["parameters"], "SwarmUI parameters").get("sui_image_params")
    if not isinstance(data, dict):
        raise ValueError("image's SwarmUI parameters hold no sui_image_params object")
    notes = ["A SwarmUI image: its parameters are read; there is no recipe to replay exactly."]
    parsed: dict[str, Any] = {
        "prompt": _text(data.get("prompt")) or "",
        "negative_prompt": _text(data.get("negativeprompt")) or "",
        "num_inference_steps": _number(data.get("steps"), int),
        "guidance_scale": _number(data.get("cfgscale"), float),
        "strength": _number(data.get("initimagecreativity"), float),
        "model": _text(data.get("model")),
        "sampler": tool_sampler(data.get("sampler"), data.get("scheduler")),
    }
    _seeded(parsed, data.get("seed"), notes)
    return _with_notes(parsed, notes)


def _json_object(text: object) -> dict:
    """A chunk's JSON object, or {} for anything else (an infotext may start with "{" too: {red|blue} cat)."""
    if not isinstance(text, str) or not text.lstrip().startswith("{") or len(text) > MAX_JSON_CHARS:
        return {}
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_fooocus(chunks: dict[str, str]) -> bool:
    data = _json_object(chunks.get("parameters"))
    version = data.get("version")
    return bool(data) and (
        "fooocus_scheme" in chunks
        or data.get("metadata_scheme") == "fooocus"
        or (isinstance(version, str) and "Fooocus" in version)
    )


def ruined_fooocus(chunks: dict[str, str]) -> BasicFields:
    """RuinedFooocus's JSON `parameters` ("Prompt", "Negative", ComfyUI's sampler names)."""
    data = _json_object(chunks.get("parameters"))
    notes = ["A RuinedFooocus image: its parameters are read; there is no recipe to replay exactly."]
    parsed: dict[str, Any] = {
        "prompt": _text(data.get("Prompt")) or "",
        "negative_prompt": _text(data.get("Negative")) or "",
        "num_inference_steps": _number(data.get("steps"), int),
        "guidance_scale": _number(data.get("cfg"), float),
        "strength": _number(data.get("denoise"), float),
        "model": _text(data.get("base_model_name")),
        "sampler": tool_sampler(data.get("sampler_name"), data.get("scheduler")),
    }
    _seeded(parsed, data.get("seed"), notes)
    return _with_notes(parsed, notes)


def hf_space(chunks: dict[str, str]) -> BasicFields:
    """The JSON `parameters` of the Hugging Face Spaces that run diffusers (its argument names, the web UI's
    sampler names)."""
    data = _json_object(chunks.get("parameters"))
    notes = ["A Hugging Face Space image: its parameters are read; there is no recipe to replay exactly."]
    parsed: dict[str, Any] = {
        "prompt": _text(data.get("prompt")) or "",
        "negative_prompt": _text(data.get("negative_prompt")) or "",
        "num_inference_steps": _number(data.get("num_inference_steps"), int),
        "guidance_scale": _number(data.get("guidance_scale"), float),
        "strength": _number(data.get("strength"), float),
        "model": _text(data.get("Model")),
        "sampler": _text(data.get("sampler")),
    }
    _seeded(parsed, data.get("seed"), notes)
    return _with_notes(parsed, notes)


def _is_graph(text: object) -> bool:
    return any(_is_node(node) for node in _json_object(text).values())


def civitai(chunks: dict[str, str]) -> BasicFields:
    """Civitai's generator: the ComfyUI graph it ran, as JSON in the EXIF UserComment (read as `parameters`)."""
    return comfyui({"prompt": chunks["parameters"]})


# (which tool, whether its chunks are present, its reader), in the order they are tried: SwarmUI before ComfyUI,
# whose graph SwarmUI writes beside its own parameters
READERS: tuple[tuple[str, Callable[[dict[str, str]], bool], Callable[[dict[str, str]], BasicFields]], ...] = (
    ("SwarmUI", lambda chunks: "sui_image_params" in _json_object(chunks.get("parameters")), swarmui),
    ("ComfyUI", lambda chunks: bool(_json_object(chunks.get("prompt"))), comfyui),
    ("Civitai", lambda chunks: _is_graph(chunks.get("parameters")), civitai),
    ("InvokeAI", lambda chunks: "invokeai_metadata" in chunks, invokeai),
    ("NovelAI", lambda chunks: chunks.get("Software") == "NovelAI" and "Comment" in chunks, novelai),
    ("Fooocus", _is_fooocus, fooocus),
    (
        "RuinedFooocus",
        lambda chunks: _json_object(chunks.get("parameters")).get("software") == "RuinedFooocus",
        ruined_fooocus,
    ),
    (
        "Hugging Face Space",
        lambda chunks: {"prompt", "num_inference_steps"} <= set(_json_object(chunks.get("parameters"))),
        hf_space,
    ),
)
TOOLS = tuple(tool for tool, _, _ in READERS)


def is_json_parameters(chunks: dict[str, str]) -> bool:
    """Whether a `parameters` chunk holds JSON (Fooocus, SwarmUI, ...), not the web UI's infotext."""
    return bool(_json_object(chunks.get("parameters")))


def foreign_fields(chunks: dict[str, str]) -> BasicFields | None:
    """Basic's fields from another tool's chunks (ComfyUI, InvokeAI, NovelAI, Fooocus), or None when none of these
    wrote them.

    Raises:
        ValueError: a tool's JSON that is not what it writes, naming the tool and the chunk.
    """
    for _tool, present, read in READERS:
        if present(chunks):
            return read(chunks)
    return None
