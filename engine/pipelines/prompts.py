"""Compel prompt weighting: `a (red)1.3 cat, (blurry)--` turned into prompt_embeds.

Only families conditioned on CLIP text embeddings take it (their adapter's `weighted_prompt`, in
engine.models.families: SD 1.5 and its fine-tunes, the SDXL refiner); Kandinsky 2.2 is conditioned on its
prior's image embeddings.

Compel parses with a pyparsing grammar that backtracks: unmemoised, its time grows about five-fold per
bracket level (6 levels: 7 s, 8 levels: 82 s, 16: never ends) and a parse cannot be stopped, so one prompt
could hold the GPU queue for everyone. Packrat memoising makes it linear in the text (16 levels: 0.3 s)
and leaves every parse as it was (tests/test_prompts.py compares both on hundreds of prompts); the
length and nesting limits below bound the worst case (benchmarks/prompt_parsing.py). A request's weighted
prompt is parsed when it is validated, so bad syntax is refused with its parameter's name before any
model loads.
"""

from __future__ import annotations

import functools
import re

import pyparsing
from compel.prompt_parser import Fragment, PromptParser

from engine.models.catalog import ModelSpec

MAX_WEIGHTED_CHARS = 1000  # the longest weighted prompt: its parse stays a fraction of a second
MAX_WEIGHT_NESTING = 16  # brackets deeper than this are refused (Compel's parser recurses per level)

# the line an exported script runs before Compel, so a replay parses as fast as the app did
LINEAR_PARSING_LINE = "pyparsing.ParserElement.enable_packrat()  # Compel's grammar is linear memoised"


def linear_parsing() -> None:
    """Memoise pyparsing's grammars (packrat): Compel's parse becomes linear. Idempotent, process-wide,
    and invisible to pyparsing's other users: memoising changes how fast a grammar matches, not what."""
    pyparsing.ParserElement.enable_packrat()


@functools.cache
def _parser() -> PromptParser:
    return PromptParser()


def check_nesting(name: str, text: str) -> None:
    """Compel's parser recurses per bracket: a prompt nested hundreds deep would exhaust Python's stack."""
    depth = deepest = 0
    for char in text:
        if char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]" and depth:
            depth -= 1
    if deepest > MAX_WEIGHT_NESTING:
        raise ValueError(f"{name} nests brackets {deepest} deep; weighted prompts take at most {MAX_WEIGHT_NESTING}")


def check_weighted(name: str, text: str) -> None:
    """A weighted prompt Compel can parse in bounded time, parsed once here (before any model loads).

    Raises:
        ValueError: too long, nested too deep, or not Compel's syntax; naming the parameter.
    """
    check_nesting(name, text)
    if len(text) > MAX_WEIGHTED_CHARS:
        raise ValueError(
            f"{name} is {len(text):,} characters long; a weighted prompt takes at most {MAX_WEIGHTED_CHARS:,} "
            "(or turn weighted_prompt off)"
        )
    linear_parsing()
    try:
        _parser().parse_conjunction(text)
    except pyparsing.ParseBaseException as exc:
        raise ValueError(f"{name} is not valid Compel syntax: {exc}") from None
    except RecursionError:
        raise ValueError(f"{name} is nested too deeply for Compel's syntax; use fewer brackets") from None


_WEBUI_SPECIAL = re.compile(r"([\\()\[\]])")


def webui_weighting(prompt: str) -> str:
    """A Compel prompt in the web UI's syntax, for the infotext other tools read: `a (cat)1.3, dog++` becomes
    `a (cat:1.3) , (dog:1.21)` (the weights Compel gives each fragment; brackets that are text escaped), which
    the web UI, its readers and `engine.recipes.webui.to_compel` read back to the same weights. A blend, a
    conjunction or a swap, which the web UI has no syntax for, is written as typed (the recipe's JSON keeps
    every prompt as typed)."""
    linear_parsing()
    try:
        conjunction = _parser().parse_conjunction(prompt)
    except (pyparsing.ParseBaseException, RecursionError):
        return prompt
    prompts = conjunction.prompts
    if len(prompts) != 1 or not all(isinstance(child, Fragment) for child in getattr(prompts[0], "children", [None])):
        return prompt
    parts = []
    for fragment in prompts[0].children:
        text = _WEBUI_SPECIAL.sub(r"\\\1", fragment.text)
        parts.append(text if abs(fragment.weight - 1) < 1e-6 else f"({text}:{fragment.weight:.3g})")
    return " ".join(parts)


def weighted_embeddings(pipe, spec: ModelSpec, prompt: str, negative_prompt: str) -> dict:
    """Pipeline keyword arguments (prompt_embeds, ...) for a Compel-weighted prompt and negative prompt.

    Both are encoded in one batch and padded to the same length, so prompts longer than CLIP's 77
    tokens are not truncated.

    Raises:
        ValueError: the family takes no embeddings, or the prompt is not valid Compel syntax.
    """
    encode = spec.adapter.weighted_prompt
    if encode is None:
        raise ValueError(f"weighted_prompt is not available: {spec.weighting_unavailable_reason}")
    linear_parsing()
    try:
        return encode(pipe, prompt, negative_prompt)
    except pyparsing.ParseBaseException as exc:
        raise ValueError(f"prompt is not valid Compel syntax: {exc}") from None
    except RecursionError:
        raise ValueError("prompt is nested too deeply for Compel's syntax; use fewer brackets") from None
