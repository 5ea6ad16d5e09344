"""Every parser of text a visitor sends takes time linear in its length (and Compel's in its depth).

One crafted request used to hold the whole server: a 20 KB infotext whose weight the web-UI translation
matched with a backtracking regex (25-30 s, the GIL held), and an 8-deep weighted prompt that Compel's
grammar parsed in 82 s (16 deep: never). Each class of crafted input here is parsed at a size and at ten
times that size: linear work takes about 10x the time, quadratic about 100x, exponential far more. The
bound is a ratio measured side by side (best of several tries), so a loaded machine does not fail it;
a parse that runs past the bound's share of time is interrupted, so a regression fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time

import pytest

from engine.base.settings import Settings
from engine.models.catalog import get_spec
from engine.models.loras import check_loras
from engine.pipelines.prompts import MAX_WEIGHT_NESTING, MAX_WEIGHTED_CHARS, check_weighted
from engine.recipes.recipe import MAX_INFOTEXT_CHARS, parse_infotext
from engine.recipes.webui import to_compel
from engine.workflows.chain import parse_stages
from engine.workflows.registry import recipe_from_json
from engine.workflows.sweep import parse_values

RATIO_BOUND = 30  # linear: ~10; quadratic: ~100
TRIES = 5
LONGEST = 20_000  # the infotext limit, the smallest of the parsers' limits


class TooSlow(Exception):
    pass


@contextlib.contextmanager
def interrupted_after(seconds: float):
    """Raise TooSlow in the parse once `seconds` pass (pure-Python loops see the signal between bytecodes)."""

    def stop(signum, frame):
        raise TooSlow

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def best_time(parse, text: str, budget: float | None = None) -> float:
    best = float("inf")
    for _ in range(TRIES):
        start = time.perf_counter()
        deadline = interrupted_after(budget) if budget else contextlib.nullcontext()
        with deadline, contextlib.suppress(ValueError):  # a refusal is an answer too: its time is what counts
            parse(text)
        best = min(best, time.perf_counter() - start)
    return best


def scaling(parse, make, n: int) -> float:
    """time(make(10 n)) / time(make(n)); n doubles until the small parse is measurable or 10n reaches LONGEST."""
    while len(make(20 * n)) <= LONGEST and best_time(parse, make(n)) < 0.002:
        n *= 2
    small = best_time(parse, make(n))
    budget = max(small * 10 * RATIO_BOUND * 3, 1.0)
    try:
        large = best_time(parse, make(10 * n), budget)
    except TooSlow:
        pytest.fail(f"10x the input ran past {budget:.1f} s (the small one took {small * 1000:.1f} ms)")
    return large / small


settings = Settings()
SD15 = get_spec("sd15")


def infotext(body: str) -> str:
    return f"a cat\nNegative prompt: blurry\n{body}"


# (name, parser, make(n) -> crafted text, smallest n); the 10x size stays under each parser's length limit
CASES = [
    ("web-UI weight, digits then a letter", to_compel, lambda n: "(a:" + "1" * n + "x)", 200),
    ("web-UI weight, nested groups", to_compel, lambda n: "(" * n + "a" + ")" * n, 100),
    ("web-UI weight, colons in nested groups", to_compel, lambda n: "(a:" * n + ")" * n, 100),
    ("web-UI weight, escapes", to_compel, lambda n: "\\(" * n + "(a:1)" * n, 100),
    ("web-UI prompt editing, unclosed", to_compel, lambda n: "[a:b|" * n, 100),
    ("web-UI prompt editing, nested", to_compel, lambda n: "[a:" * n + "]" * n, 100),
    ("infotext, open quotes", parse_infotext, lambda n: infotext('Steps: "' * (n // 8)), 100),
    ("infotext, keys without values", parse_infotext, lambda n: infotext("Steps:" * (n // 6)), 100),
    ("infotext, commas", parse_infotext, lambda n: infotext("," * n), 100),
    ("infotext, one long key", parse_infotext, lambda n: "a" * n, 100),
    ("infotext, backslashes", parse_infotext, lambda n: 'k: "' + "\\" * n, 100),
    ("infotext, pairs", parse_infotext, lambda n: "Key: value, " * (n // 12), 100),
    ("infotext, weighted prompt", lambda t: to_compel(parse_infotext(t)["prompt"]), lambda n: "(a:1" * (n // 4), 100),
    ("sweep range, digits", lambda t: parse_values("strength", t), lambda n: "1" * n + "-", 200),
    ("sweep range, spaces", lambda t: parse_values("strength", t), lambda n: "0.1" + " " * n + "-" + " " * n, 100),
    ("sweep range, step", lambda t: parse_values("strength", t), lambda n: "0.1-0.2 (+" + "0" * n + "x", 100),
    ("sweep list, commas", lambda t: parse_values("seed", t), lambda n: "1," * (n // 2), 100),
    ("sweep lines", lambda t: parse_values("prompt", t), lambda n: "a\n" * (n // 2), 100),
    ("LoRA string, colons", lambda t: check_loras(t, SD15), lambda n: "a:" * (n // 2), 100),
    ("LoRA string, commas", lambda t: check_loras(t, SD15), lambda n: "a," * (n // 2), 100),
    ("chain stages, nested arrays", lambda t: parse_stages(t, 8), lambda n: "[" * n, 100),
    ("chain stages, long strings", lambda t: parse_stages(t, 8), lambda n: json.dumps([{"model": "a" * n}]), 100),
    (
        "recipe JSON, long fields",
        recipe_from_json,
        lambda n: json.dumps({"workflow": "img2img", "model": "a" * n}),
        100,
    ),
]


@pytest.mark.parametrize("name, parse, make, n", CASES, ids=[case[0] for case in CASES])
def test_every_text_parser_is_linear_in_its_input(name, parse, make, n):
    assert len(make(10 * n)) <= LONGEST
    ratio = scaling(parse, make, n)
    assert ratio < RATIO_BOUND, f"{name}: 10x the input took {ratio:.0f}x the time"


def test_the_infotext_limit_leaves_room_for_the_crafted_cases():
    assert MAX_INFOTEXT_CHARS >= LONGEST  # the cases above reach their 10x sizes inside it


WEIGHTED_CASES = [
    ("nested brackets", lambda n: "(" * n + "cat" + ")" * n, 1, MAX_WEIGHT_NESTING),
    ("weighted groups", lambda n: "(a cat)1.2 " * n, 8, MAX_WEIGHTED_CHARS // 11),
    ("nested groups side by side", lambda n: "((((cat)))) " * n, 8, MAX_WEIGHTED_CHARS // 12),
    ("plus and minus", lambda n: "cat+ dog-- " * n, 8, MAX_WEIGHTED_CHARS // 11),
]


@pytest.mark.parametrize("name, make, small, large", WEIGHTED_CASES, ids=[case[0] for case in WEIGHTED_CASES])
def test_compel_parses_in_time_linear_in_length_and_depth(name, make, small, large):
    """8 levels once took 82 s; 16 (the limit) never ended. Memoised, 16x the depth takes ~16x the time."""
    parse = lambda text: check_weighted("prompt", text)  # noqa: E731
    first = best_time(parse, make(small))
    budget = max(first * (large / small) * RATIO_BOUND * 3, 2.0)
    try:
        second = best_time(parse, make(large), budget)
    except TooSlow:
        pytest.fail(f"{name}: {large / small:.0f}x the input ran past {budget:.1f} s")
    assert second / first < RATIO_BOUND * large / small / 10, f"{name}: {second / first:.0f}x the time"


def test_weighted_prompts_past_the_limits_are_refused_by_name():
    with pytest.raises(ValueError, match=r"negative_prompt is 1,001 characters long; a weighted prompt takes at most"):
        check_weighted("negative_prompt", "a" * (MAX_WEIGHTED_CHARS + 1))
    deep = MAX_WEIGHT_NESTING + 1
    with pytest.raises(ValueError, match=f"prompt nests brackets {deep} deep"):
        check_weighted("prompt", "(" * deep + "cat" + ")" * deep)


MEMO_CHECK = """
import json, random, sys
import pyparsing
if sys.argv[1] == "1":
    pyparsing.ParserElement.enable_packrat()
from compel.prompt_parser import PromptParser
prompts = json.loads(sys.stdin.read())
parser = PromptParser()
print(json.dumps([repr(parser.parse_conjunction(p)) for p in prompts]))
"""


def test_memoised_parsing_leaves_every_parse_as_it_was():
    """Packrat changes how fast Compel's grammar matches, not what: the same trees, memoised or not."""
    import random

    rng = random.Random(0)
    atoms = ["cat", "a", "(", ")", "[", "]", "+", "-", "1.2", ",", ".", " ", '"', "0.5", ".blend(1, 1)", ")1.1"]
    prompts = [
        "a (red)1.3 cat, (blurry)--",
        '("a cat", "a dog").blend(0.5, 0.5)',
        '("a cat", "a dog").and()',
        'a "quoted (thing)"1.2 here',
        "a (red (cat)1.2)0.8 on a (mat)+",
        "a cat.swap(dog)",
        "a \\(escaped\\) cat",
        "((a)) [b] (c:1.2)",
    ]
    prompts += ["".join(rng.choice(atoms) for _ in range(rng.randint(1, 18))) for _ in range(300)]
    prompts = [p for p in prompts if max(p.count("("), p.count("[")) <= 3]  # unmemoised depth 4+ takes seconds
    trees = [
        subprocess.run(
            [sys.executable, "-c", MEMO_CHECK, flag],
            input=json.dumps(prompts),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for flag in ("0", "1")
    ]
    assert json.loads(trees[0]) == json.loads(trees[1])
    assert len(json.loads(trees[0])) > 200
