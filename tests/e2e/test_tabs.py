"""Every tab as a person uses it: pick an example, press the main button, see the result."""

from __future__ import annotations

import re

from playwright.sync_api import expect


def shot(folder, name: str, full_page: bool = True) -> dict:
    """Screenshot options: JPEG keeps the README's pictures of noise images small."""
    return {"path": folder / f"{name}.jpg", "type": "jpeg", "quality": 70, "full_page": full_page}


def open_tab(page, name: str):
    page.get_by_role("tab", name=name, exact=True).click()
    panel = page.locator("[role=tabpanel]:visible")
    panel.wait_for()
    return panel


def pick_example(panel, row: int) -> None:
    """Click example `row` (1 = the first): a table row, or a button where the examples have one input.

    Returns once the row's prompt has reached the tab's text box: on a loaded machine an example's
    values arrive late, and a run started before would run the old ones (or none)."""
    rows = panel.locator("table tr")
    if not rows.count():  # a row of thumbnails (Basic shows the photos only) or of single values
        panel.locator("button.gallery-item, .gallery button").nth(row - 1).click()
        panel.page.wait_for_function(
            "() => [...document.querySelectorAll('[role=tabpanel] textarea')]"
            ".some(t => t.offsetParent !== null && t.value.trim().length > 0)",
            timeout=60_000,
        )
        return
    shown = [text.strip() for text in rows.nth(row).locator("td").all_inner_texts()]
    rows.nth(row).click()
    prompts = [text for text in shown if len(text) > 15 and " " in text]  # a prompt, cut short with "..."
    if prompts:
        panel.page.wait_for_function(
            "start => [...document.querySelectorAll('[role=tabpanel] textarea')]"
            ".some(t => t.offsetParent !== null && t.value.startsWith(start))",
            arg=prompts[0][:15],
            timeout=60_000,
        )


def image_loaded(page, selector: str) -> None:
    """Wait until an image under `selector` has really loaded (non-empty pixels), and return its size."""
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel + ' img')].some(i => i.complete && i.naturalWidth > 0)",
        arg=selector,
    )
    return page.evaluate(
        "sel => [...document.querySelectorAll(sel + ' img')].filter(i => i.naturalWidth > 0)"
        ".map(i => [i.naturalWidth, i.naturalHeight])",
        selector,
    )


def expect_summary(page, elem_id: str, text: str, timeout: int = 5_000) -> None:
    """Wait until the plain-text summary box `elem_id` contains `text`."""
    expect(page.locator(f"#{elem_id} textarea")).to_have_value(re.compile(re.escape(text)), timeout=timeout)


def test_the_header_shows_the_model_mode(page, shots):
    banner = page.locator(".mode-banner").first
    expect(banner).to_contain_text("Model mode: tiny")
    expect(banner).to_contain_text("Images are noise from random weights")
    assert "mode-tiny" in banner.get_attribute("class")


def test_basic_example_runs_and_shows_results(page, shots):
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", "Seed", timeout=120_000)
    sizes = image_loaded(page, "#basic-gallery")
    assert sizes and all(w >= 64 and h >= 64 for w, h in sizes)
    assert image_loaded(page, "#basic-slider")  # init | result, to drag and compare
    expect_summary(page, "basic-summary", "denoising steps")
    page.screenshot(**shot(shots, "basic"))


def test_basic_output_size_resizes_to_the_size_asked(page):
    """Advanced's Output size: Resize to shows its width and height, the plan says the size, the run makes it."""
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)
    panel.get_by_text("Advanced").first.click()
    width = panel.get_by_label("Width").locator("xpath=..").locator("input[type=number]").first
    expect(width).to_be_hidden()
    size = panel.locator("#basic-output-size input").first
    size.fill("Resize to")
    size.press("Enter")
    expect(width).to_be_visible()
    width.fill("128")
    width.press("Enter")
    height = panel.get_by_label("Height").locator("xpath=..").locator("input[type=number]").first
    height.fill("96")
    height.press("Enter")
    mode = panel.locator("#basic-resize-mode input").first
    mode.fill("Crop and resize")
    mode.press("Enter")
    expect(panel.get_by_text(re.compile("Output 128×96 \\(resize to 128×96; crop and resize"))).to_be_visible(
        timeout=60_000
    )
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", "128×96", timeout=120_000)
    expect_summary(page, "basic-summary", "(crop and resize)")
    assert image_loaded(page, "#basic-gallery")[0] == [128, 96]


def test_sweep_example_runs_and_shows_the_grid(page, shots):
    panel = open_tab(page, "Sweep")
    pick_example(panel, 1)  # strength 0.3 to 0.9
    panel.get_by_role("button", name="Run sweep").click()
    expect_summary(page, "sweep-summary", "Done:", timeout=120_000)
    (width, height), *_ = image_loaded(page, "#sweep-grid")
    assert width > height  # four cells side by side, labelled
    image_loaded(page, "#sweep-cells")
    for cell in page.locator("#sweep-cells .thumbnail-item").all():  # a caption leaves the cell in sight
        caption, thumbnail = cell.locator(".caption-label").bounding_box(), cell.bounding_box()
        assert caption and thumbnail and caption["height"] < 0.2 * thumbnail["height"], (caption, thumbnail)
    assert page.locator("#sweep-cells .thumbnail-item .caption-label").all_inner_texts() == [
        "strength=0.3",
        "strength=0.5",
        "strength=0.7",
        "strength=0.9",
    ]  # what sets each cell apart; the seed they share is in the summary
    page.screenshot(**shot(shots, "sweep"))


def test_chain_example_runs_and_shows_the_final_image(page, shots):
    panel = open_tab(page, "Chain")
    pick_example(panel, 1)  # image-image-image, passing latents
    panel.get_by_role("button", name="Run chain").click()
    expect_summary(page, "chain-summary", "Done: seed", timeout=180_000)
    assert image_loaded(page, "#chain-final")
    expect_summary(page, "chain-summary", "received latent")
    page.screenshot(**shot(shots, "chain"))


def test_depth_example_runs_and_shows_the_four_images(page, shots):
    panel = open_tab(page, "Depth")
    pick_example(panel, 1)  # the Middlebury motorcycle with its measured disparity
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "depth-summary", "Restyle:", timeout=180_000)
    (width, height), *_ = image_loaded(page, "#depth-grid")
    assert width > 64 and height > 64
    page.screenshot(**shot(shots, "depth"))


def test_recipe_example_reads_and_sends_to_basic(page, shots):
    panel = open_tab(page, "Recipe")
    pick_example(panel, 1)
    panel.get_by_role("button", name="Read recipe").click()
    expect_summary(page, "recipe-fields", "seed", timeout=60_000)
    expect_summary(page, "recipe-fields", "33")
    page.screenshot(**shot(shots, "recipe"))
    panel.get_by_role("button", name="Send to Basic").click()
    basic = page.locator("[role=tabpanel]:visible")
    expect(basic.get_by_label("Prompt", exact=True)).to_have_value(re.compile("^cat wizard, gandalf"))
    basic.get_by_text("Advanced").click()
    expect(basic.get_by_label("Seed")).to_have_value("33")


def test_a_bad_value_shows_a_readable_message(page, shots):
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)
    model = panel.get_by_label("Model")
    model.fill("<b>no-such-model</b>")
    model.press("Enter")
    panel.get_by_role("button", name="Generate").click()
    toast = page.locator(".toast-body").first
    expect(toast).to_contain_text("model must be one of sd15", timeout=60_000)
    expect(toast).to_contain_text("got '<b>no-such-model</b>'")  # shown as typed, not as markup
    assert "null" not in toast.inner_text()
    page.screenshot(**shot(shots, "error", full_page=False))


def test_a_non_image_after_an_example_gets_the_apps_message(page, tmp_path):
    """An Example rebuilds the image input in the page's session; the upload still reaches the engine
    unopened, so a text file gets the app's message, not Gradio's decode error with a server path."""
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)
    expect(panel.locator("img").first).to_be_visible(timeout=60_000)  # the example's image is in the input
    notes = tmp_path / "notes.png"
    notes.write_text("this is not an image")
    panel.locator("input[type=file]").first.set_input_files(str(notes))
    # the upload has reached the server once the plan preview reads it (a loaded machine uploads slowly,
    # and Generate pressed before that would run the example's image)
    plan = panel.locator(".prose").filter(has_text="notes.png").first
    expect(plan).to_contain_text("image is not an image this app can read", timeout=60_000)
    panel.get_by_role("button", name="Generate").click()
    toast = page.locator(".toast-body").first
    expect(toast).to_contain_text("image is not an image this app can read ('notes.png')", timeout=60_000)
    assert "Could not preprocess" not in toast.inner_text() and "/tmp" not in toast.inner_text()


def test_a_first_visit_sees_what_it_needs_above_the_fold(page):
    """At 1400x1000, without scrolling: the image, the prompt, Generate, guidance and steps (the tab's first
    sentence names guidance), and no red Stop while nothing runs."""
    panel = open_tab(page, "Basic")
    for control in ("Prompt", "Guidance scale", "Steps"):
        assert panel.get_by_label(control).first.is_visible(), control  # not under Advanced
    box = panel.get_by_role("button", name="Generate").bounding_box()
    assert box is not None and box["y"] + box["height"] <= 1000, box
    assert not panel.get_by_role("button", name="Stop").is_visible()


def test_a_phone_sees_every_tab_and_a_short_header(phone):
    visible = [tab.inner_text() for tab in phone.get_by_role("tab").all() if tab.is_visible()]
    assert visible == ["Basic", "Sweep", "Chain", "Depth", "Inpaint", "Edit", "Recipe", "History"]  # none behind "..."
    banner = phone.locator(".mode-banner").first.bounding_box()
    assert banner is not None and banner["y"] + banner["height"] < 844 / 3, banner
    for tab in ("Basic", "Sweep", "Chain", "Depth", "Inpaint", "Edit"):  # examples whole, not cut off at the edge
        panel = open_tab(phone, tab)
        examples = panel.locator("table, button.gallery-item").first
        examples.wait_for()
        box = examples.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390, (tab, box)


def test_stop_stops_a_long_run(page, shots):
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)
    stop = panel.get_by_role("button", name="Stop")
    expect(stop).to_be_hidden()  # shown only while a run is on
    steps = panel.get_by_label("Steps").locator("xpath=..").locator("input[type=number]").first
    steps.fill("150")
    steps.press("Enter")
    strength = panel.get_by_label("Strength").locator("xpath=..").locator("input[type=number]").first
    strength.fill("1")
    strength.press("Enter")
    panel.get_by_role("button", name="Generate").click()
    expect(page.locator(".progress-text, .eta-bar, .progress-level").first).to_be_visible(timeout=60_000)
    stop.click()
    expect_summary(page, "basic-summary", "Stopped after", timeout=60_000)
    done = int(re.search(r"Stopped after (\d+)", page.locator("#basic-summary textarea").input_value()).group(1))
    assert done < 150
    expect(stop).to_be_hidden()


def test_a_basic_run_shows_live_previews_before_its_result(page):
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)
    panel.get_by_text("Advanced").click()
    steps = panel.get_by_label("Steps").locator("xpath=..").locator("input[type=number]").first
    steps.fill("40")
    steps.press("Enter")
    strength = panel.get_by_label("Strength").locator("xpath=..").locator("input[type=number]").first
    strength.fill("1")
    strength.press("Enter")
    panel.get_by_role("button", name="Generate").click()
    gallery = page.locator("#basic-gallery")
    expect(gallery.get_by_text(re.compile(r"live preview: step \d+ of \d+")).first).to_be_attached(timeout=120_000)
    assert image_loaded(page, "#basic-gallery")  # the preview, while the run goes on
    # the progress bar is on the other outputs, never over the preview: read both at one instant
    over_preview = page.wait_for_function(
        "() => document.querySelector('#basic-summary .progress-level')"
        " && document.querySelector('#basic-gallery .caption-label')?.textContent.includes('live preview')"
        " ? [document.querySelectorAll('#basic-gallery .progress-level').length] : null"
    )
    assert over_preview.json_value() == [0]
    expect_summary(page, "basic-summary", "Seed", timeout=300_000)
    expect(gallery.get_by_text(re.compile("seed \\d+")).first).to_be_attached()
    expect(gallery.get_by_text("live preview")).to_have_count(0)  # the result replaced the preview


def test_results_survive_a_reload_in_the_history(page, shots):
    from ui.history import STORAGE_KEY

    panel = open_tab(page, "Basic")
    pick_example(panel, 2)
    stored = page.evaluate("key => localStorage.getItem(key)", STORAGE_KEY)
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", "Seed", timeout=120_000)
    # the history is written just after the result: wait until this browser's store changes
    page.wait_for_function("([key, old]) => localStorage.getItem(key) !== old", arg=[STORAGE_KEY, stored])
    page.reload()
    open_tab(page, "History")
    assert image_loaded(page, "#history-gallery")
    page.locator("#history-gallery img").first.click()
    expect(page.locator("#history-recipe")).to_contain_text("img2img", timeout=30_000)
    panel = page.locator("[role=tabpanel]:visible")
    expect(panel.get_by_role("cell", name="recipe.py")).to_be_visible()
    expect(panel.get_by_role("cell", name="init.png")).to_be_visible()  # the script's second argument
    page.screenshot(**shot(shots, "history"))
    panel.get_by_role("button", name="Send to Basic").click()  # the recipe again, with its init
    expect_summary(page, "basic-summary", "Filled from the History tab", timeout=60_000)
    expect_summary(page, "basic-summary", "Init image: the one this result was made from")
    basic = page.locator("[role=tabpanel]:visible")
    expect(basic.get_by_label("Prompt", exact=True)).to_have_value(re.compile("^Astronaut in a jungle"))
    open_tab(page, "History")
    page.locator("#history-gallery img").first.click()
    page.locator("[role=tabpanel]:visible").get_by_role("button", name="Use as input").click()  # the result itself
    expect_summary(page, "basic-summary", "Init image: a result from the History tab", timeout=60_000)
    basic = page.locator("[role=tabpanel]:visible")
    expect(basic.locator("img").first).to_have_attribute("src", re.compile(r"[0-9a-f]{32}\.png"))


def test_a_web_ui_png_sent_to_basic_fills_what_maps_and_notes_the_rest(page, tmp_path):
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text(
        "parameters",
        "a (red fox:1.2) in the snow <lora:add_detail:0.7>\nNegative prompt: [blurry]\n"
        "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.55, Clip skip: 2",
    )
    png = tmp_path / "webui.png"
    Image.new("RGB", (64, 96), (90, 120, 160)).save(png, pnginfo=info)
    panel = open_tab(page, "Recipe")
    panel.locator("input[type=file]").first.set_input_files(str(png))
    # the uploaded file's row is named by its aria-label: its text is stem and extension in two spans, which
    # a server-rendered page separates with a space ("webui .png"), so a text match is not reliable
    expect(panel.get_by_role("cell", name="webui.png")).to_be_visible(timeout=60_000)
    panel.get_by_role("button", name="Send to Basic").click()
    expect_summary(page, "basic-summary", "Filled from the Recipe tab", timeout=60_000)
    expect_summary(page, "basic-summary", "<lora:add_detail:0.7> removed: no LoRA of that name is offered here")
    expect_summary(page, "basic-summary", "Clip skip: 2")
    expect_summary(page, "basic-summary", "The init image is not part of a recipe")
    basic = page.locator("[role=tabpanel]:visible")
    expect(basic.get_by_label("Prompt", exact=True)).to_have_value("a (red fox)1.2 in the snow", timeout=30_000)
    expect(basic.get_by_label("Negative prompt").first).to_have_value("(blurry)0.909")
    basic.get_by_text("Advanced").first.click()
    expect(basic.get_by_label("Weighted prompt (Compel)").first).to_be_checked()
    expect(basic.get_by_label("Scheduler (sampler)").first).to_have_value("DPM++ 2M Karras")
    seed = basic.get_by_label("Seed").locator("xpath=..").locator("input[type=number]").first
    expect(seed).to_have_value("1234567")
    expect(basic.locator("#basic-output-size input").first).to_have_value("Resize to")  # the web UI's Size
    width = basic.get_by_label("Width").locator("xpath=..").locator("input[type=number]").first
    expect(width).to_have_value("512")
    expect(basic.get_by_label("Height").locator("xpath=..").locator("input[type=number]").first).to_have_value("768")


def test_result_areas_are_outputs_not_upload_areas(page):
    """Galleries and download lists offer no upload, drop zone or delete before (or after) a run."""
    for tab in ("Basic", "Sweep", "Chain", "Depth", "History"):
        open_tab(page, tab)
        outputs = page.locator("[role=tabpanel]:visible .studio-output")
        assert outputs.count() >= 1, tab
        for index in range(outputs.count()):
            area = outputs.nth(index)
            expect(area).not_to_contain_text("Upload")
            expect(area).not_to_contain_text("Drop")
            assert area.locator("input[type=file]").count() == 0, tab


def basic_example_with_strength_0(page):
    """Basic with its first example and a typed strength of 0, once the page holds both: on a loaded
    machine the example's fields arrive late, and Generate pressed before would run something else."""
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)
    expect(panel.get_by_label("Prompt", exact=True)).to_have_value(re.compile("^cat wizard"))
    strength = panel.get_by_label("Strength").locator("xpath=..").locator("input[type=number]").first
    strength.fill("0")
    strength.press("Enter")
    plan = panel.locator(".prose").filter(has_text="strength must be").first
    expect(plan).to_contain_text("strength must be in (0, 1], got 0", timeout=60_000)  # the run's own words
    return panel, strength


def test_a_typed_strength_of_0_is_kept_and_named_in_the_error(page):
    panel, strength = basic_example_with_strength_0(page)
    panel.get_by_role("button", name="Generate").click()
    expect(page.locator(".toast-body").first).to_contain_text("strength must be in (0, 1], got 0", timeout=60_000)
    expect(strength).to_have_value("0")


RUN_BUTTONS = {"Basic": "Generate", "Sweep": "Run sweep", "Chain": "Run chain", "Depth": "Generate"}


def test_examples_come_before_the_run_button_and_the_advanced_controls(page):
    """A first-time visitor sees each tab's examples without scrolling past the advanced controls."""
    for tab, button in RUN_BUTTONS.items():
        panel = open_tab(page, tab)
        examples = panel.locator("table, button.gallery-item").first  # a table, or a row of thumbnails
        examples.wait_for()
        run = panel.get_by_role("button", name=button, exact=True).first
        top_of_examples = examples.bounding_box()["y"]
        assert top_of_examples < run.bounding_box()["y"], tab
        accordion = panel.locator("button.label-wrap").first  # "Advanced", "Stages and options", ...
        if accordion.count():
            assert top_of_examples < accordion.bounding_box()["y"], tab


def test_tiny_mode_on_a_cpu_starts_small_and_counts_steps_one_way(page):
    """No flags: tiny mode on this CPU works at 256x256 from 10 steps, and the plan, the progress and the
    summary count the same steps (PNDM's repeated one included)."""
    from engine.pipelines.schedulers import steps_run

    expect(page.locator(".mode-banner").first).to_contain_text("10 steps")
    panel = open_tab(page, "Basic")
    pick_example(panel, 2)
    strength_box = panel.get_by_label("Strength").locator("xpath=..").locator("input[type=number]").first
    strength = float(strength_box.input_value())
    steps = steps_run("sd15", 10, strength)
    assert steps == int(10 * strength) + 1  # PNDM: one more than int(10 x strength)
    expect(panel.locator(".prose").filter(has_text="denoising steps will run").first).to_contain_text(f"{steps}")
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", f"{steps} denoising steps", timeout=120_000)
    expect_summary(page, "basic-summary", "256×256")  # the astronaut, 512x512, at the quick working size


def visible_errors(page) -> int:
    """Red "Error" badges on the open tab's outputs (a failed run leaves them)."""
    return page.evaluate(
        "() => [...document.querySelectorAll('[role=tabpanel] .studio-output .error, "
        "[role=tabpanel] [id$=-summary] .error')].filter(e => e.offsetParent !== null).length"
    )


def test_a_failed_runs_reason_stays_where_the_result_would_be(page):
    """The toast goes in seconds: the reason stays in the summary box until the next run, and no output panel
    is left with a bare red "Error" (once every panel said only that, the Recipe tab's three at ~800 px)."""
    panel, _ = basic_example_with_strength_0(page)
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", "⚠️ Invalid input: strength must be in (0, 1], got 0", timeout=60_000)
    expect(panel.get_by_role("button", name="Stop")).to_be_hidden(timeout=30_000)  # nothing runs: no red Stop
    page.wait_for_function(
        "() => ![...document.querySelectorAll('[role=tabpanel] .studio-output .error, "
        "[role=tabpanel] [id$=-summary] .error')].some(e => e.offsetParent)",
        timeout=30_000,
    )
    expect(page.locator(".toast-body")).to_have_count(0, timeout=60_000)  # the toast is gone, the reason is not
    expect_summary(page, "basic-summary", "strength must be in (0, 1], got 0")
    assert visible_errors(page) == 0
    recipe = open_tab(page, "Recipe")
    recipe.get_by_role("button", name="Read recipe").click()
    expect_summary(page, "recipe-fields", "⚠️ Invalid input:", timeout=60_000)
    assert visible_errors(page) == 0


def test_sweep_values_line_up_and_the_grid_separates_its_cells(page):
    panel = open_tab(page, "Sweep")
    x_box = panel.get_by_label("X values")
    y_box = panel.get_by_label("Y values")
    x, y = x_box.bounding_box(), y_box.bounding_box()
    assert abs(x["y"] - y["y"]) <= 2 and abs(x["height"] - y["height"]) <= 2, (x, y)
    grid_panel = page.locator("#sweep-grid").bounding_box()
    inputs_panel = panel.get_by_label("Prompt", exact=True).bounding_box()
    assert grid_panel["width"] > inputs_panel["width"]  # the grid gets the wider column
    pick_example(panel, 3)  # seeds 1-4
    panel.get_by_role("button", name="Run sweep").click()
    expect_summary(page, "sweep-summary", "Done:", timeout=120_000)
    image_loaded(page, "#sweep-grid")
    # the grid as served: white columns run between the four cells, from their top to their bottom
    from io import BytesIO

    import httpx
    from PIL import Image

    src = page.locator("#sweep-grid img").first.get_attribute("src")
    grid = Image.open(BytesIO(httpx.get(src, timeout=30).content)).convert("L")
    band = grid.crop((0, grid.height - 40, grid.width, grid.height - 5))  # inside the cells, below the labels
    white = [all(band.getpixel((x, y)) == 255 for y in range(band.height)) for x in range(band.width)]
    inner = white[white.index(False) : len(white) - white[::-1].index(False)]
    gaps = sum(1 for x in range(1, len(inner)) if inner[x] and not inner[x - 1])
    assert gaps == 3, f"{gaps} white gaps between 4 cells"


def test_chain_captions_and_the_depth_map_label_show_in_full(page):
    panel = open_tab(page, "Chain")
    pick_example(panel, 1)
    panel.get_by_role("button", name="Run chain").click()
    expect_summary(page, "chain-summary", "Done: seed", timeout=180_000)
    captions = page.locator("#chain-stages .caption-label")
    expect(captions).to_have_count(3)
    for index in range(3):
        caption = captions.nth(index)
        assert caption.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), caption.inner_text()
    expect(captions.nth(2)).to_contain_text("(final)")
    open_tab(page, "Depth")
    label = page.locator("[role=tabpanel]:visible .studio-unopened-upload [data-testid=block-label]").nth(1)
    expect(label).to_contain_text("Depth map")
    assert label.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), label.inner_text()


def test_downloads_offer_no_remove_buttons_after_a_run(page):
    panel = open_tab(page, "Basic")
    pick_example(panel, 3)
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", "Seed", timeout=120_000)
    panel.get_by_text("Recipe: the diffusers code").click()
    expect(panel.get_by_role("cell", name="init.png")).to_be_visible(timeout=30_000)
    remove = page.locator("[role=tabpanel]:visible .studio-output button[aria-label='Remove this file']")
    assert remove.count() >= 1  # Gradio draws them; the page hides them
    for index in range(remove.count()):
        expect(remove.nth(index)).to_be_hidden()


def test_ctrl_enter_runs_the_open_tab(page):
    panel = open_tab(page, "Recipe")
    pick_example(panel, 1)
    infotext = panel.get_by_label(re.compile("web UI infotext"))
    # the example's text first: on a loaded machine the keypress could otherwise run on the empty field
    expect(infotext).to_have_value(re.compile("Seed: 33"), timeout=60_000)
    infotext.press("Control+Enter")
    expect_summary(page, "recipe-fields", "seed: 33", timeout=60_000)


def test_a_result_dragged_onto_the_init_image_becomes_the_init(page):
    panel = open_tab(page, "Basic")
    pick_example(panel, 1)  # chelsea, 451x300: the plan names the input size
    plan = panel.locator(".prose").filter(has_text="denoising steps will run").first
    expect(plan).to_contain_text("input 451×300")
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", "Seed", timeout=120_000)
    width, height = image_loaded(page, "#basic-gallery")[0]
    page.locator("#basic-gallery img").first.drag_to(panel.locator(".studio-unopened-upload").first)
    expect(plan).to_contain_text(f"input {width}×{height}", timeout=60_000)


def test_chain_and_depth_have_a_before_after_slider(page):
    for tab, button, done in (("Chain", "Run chain", "Done: seed"), ("Depth", "Generate", "Restyle:")):
        panel = open_tab(page, tab)
        pick_example(panel, 1)
        panel.get_by_role("button", name=button).click()
        expect_summary(page, f"{tab.lower()}-summary", done, timeout=180_000)
        page.wait_for_function(
            "sel => [...document.querySelectorAll(sel + ' img')].filter(i => i.naturalWidth > 0).length >= 2",
            arg=f"#{tab.lower()}-slider",
            timeout=60_000,
        )
        expect(panel.get_by_text("drag to compare")).to_be_visible()


def test_a_result_png_sent_to_basic_brings_its_init_image(page, tmp_path):
    import httpx

    panel = open_tab(page, "Basic")
    pick_example(panel, 2)  # the astronaut
    panel.get_by_role("button", name="Generate").click()
    expect_summary(page, "basic-summary", "Seed", timeout=120_000)
    image_loaded(page, "#basic-gallery")
    url = page.locator("#basic-gallery img").first.get_attribute("src")
    png = tmp_path / url.rsplit("/", 1)[-1]  # saved as the browser's download names it
    png.write_bytes(httpx.get(url, timeout=30).content)
    pick_example(panel, 1)  # another init image is in Basic now
    plan = panel.locator(".prose").filter(has_text="denoising steps will run").first
    expect(plan).to_contain_text("input 451×300")
    panel = open_tab(page, "Recipe")
    panel.locator("input[type=file]").first.set_input_files(str(png))
    expect(panel.get_by_text(png.name)).to_be_visible(timeout=60_000)
    panel.get_by_role("button", name="Send to Basic").click()
    expect_summary(page, "basic-summary", "Init image: the one this result was made from", timeout=60_000)
    expect(plan).to_contain_text("input 256×256", timeout=60_000)  # the astronaut as the pipeline saw it


def test_a_mask_painted_with_the_mouse_is_inpainted_and_the_rest_kept(page, shots, tmp_path):
    """Upload the cat into the Inpaint tab's editor, paint a stroke over its face with the mouse, Inpaint: the run
    gets the stroke as its mask (downloaded from the result), white where painted and black elsewhere."""
    from io import BytesIO

    import httpx
    import numpy as np
    from PIL import Image
    from skimage import data

    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")
    panel = open_tab(page, "Inpaint")
    editor = page.locator("#inpaint-editor")
    with page.expect_file_chooser() as chooser:
        editor.get_by_role("button", name="Upload", exact=True).click()
    chooser.value.set_files(str(tmp_path / "cat.png"))
    brush = editor.get_by_role("button", name="Brush", exact=True)
    expect(brush).to_have_class(re.compile("highlight"), timeout=60_000)  # the image is in: the brush is on
    box = editor.locator("canvas").first.bounding_box()
    assert box is not None
    left, top = box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.45
    page.mouse.move(left, top)
    page.mouse.down()
    for step in range(1, 13):  # a stroke across the middle of the picture
        page.mouse.move(left + step * box["width"] * 0.02, top, steps=3)
    page.mouse.up()
    panel.get_by_role("button", name="Inpaint", exact=True).click()
    expect_summary(page, "inpaint-summary", "Seed", timeout=180_000)
    image_loaded(page, "#inpaint-gallery")
    page.screenshot(**shot(shots, "inpaint"))
    panel.get_by_text("Recipe: the diffusers code").click()
    expect(panel.get_by_role("cell", name="mask.png")).to_be_visible(timeout=30_000)
    link = panel.locator("a[href*='mask.png']").first
    mask_url = link.get_attribute("href")
    assert mask_url is not None
    mask = np.asarray(Image.open(BytesIO(httpx.get(mask_url if "://" in mask_url else page.url + mask_url).content)))
    height, width = mask.shape
    assert mask[int(height * 0.45), int(width * 0.5)] == 255  # under the stroke
    assert mask[: height // 5].max() == 0 and mask[-height // 5 :].max() == 0  # far from it: unpainted


def test_inpaint_example_runs_with_its_mask(page, shots):
    panel = open_tab(page, "Inpaint")
    pick_example(panel, 1)  # chelsea, with a mask over her head
    expect(panel.get_by_label("Prompt", exact=True)).to_have_value(re.compile("red fox"), timeout=60_000)
    panel.get_by_role("button", name="Inpaint", exact=True).click()
    expect_summary(page, "inpaint-summary", "Seed", timeout=180_000)
    (width, height), *_ = image_loaded(page, "#inpaint-gallery")
    assert (width, height) == (312, 208)  # the cat at tiny mode's working size


def test_chain_inpaint_example_restyles_then_repaints_its_mask(page):
    panel = open_tab(page, "Chain")
    pick_example(panel, 4)  # coffee, image-inpaint, with its mask
    expect(panel.get_by_label("Subject", exact=True)).to_have_value(re.compile("matcha"), timeout=60_000)
    panel.get_by_role("button", name="Run chain").click()
    expect_summary(page, "chain-summary", "Done: seed", timeout=240_000)
    expect_summary(page, "chain-summary", "2. Stable Diffusion 1.5 (inpaint), received image")
    assert image_loaded(page, "#chain-final")


def test_a_sweep_with_a_mask_inpaints_each_cell(page, tmp_path):
    from PIL import Image, ImageDraw
    from skimage import data

    photo, mask = tmp_path / "cat.png", tmp_path / "mask.png"
    Image.fromarray(data.chelsea()).save(photo)
    drawn = Image.new("L", (451, 300), 0)
    ImageDraw.Draw(drawn).ellipse((150, 30, 340, 230), fill=255)
    drawn.save(mask)
    panel = open_tab(page, "Sweep")
    panel.locator("input[type=file]").first.set_input_files(str(photo))
    panel.get_by_label("Prompt", exact=True).fill("a red fox's head")
    panel.get_by_text("Inpaint: sweep with a mask (optional)").click()
    panel.locator("input[type=file]").nth(1).set_input_files(str(mask))
    panel.get_by_label("X axis").fill("mask_blur")
    panel.get_by_label("X axis").press("Enter")
    values = panel.get_by_label("X values")
    expect(values).to_have_value("0, 4, 16", timeout=30_000)  # the axis' example values
    values.fill("0, 16")
    panel.get_by_role("button", name="Run sweep").click()
    expect_summary(page, "sweep-summary", "Done:", timeout=240_000)
    assert page.locator("#sweep-cells .thumbnail-item .caption-label").all_inner_texts() == [
        "mask_blur=0",
        "mask_blur=16",
    ]


def test_picking_the_dedicated_inpainting_model_sets_its_strength(page):
    panel = open_tab(page, "Inpaint")
    strength = panel.get_by_label("Strength").locator("xpath=..").locator("input[type=number]").first
    expect(strength).to_have_value("0.8")
    picker = panel.get_by_label("Model")
    picker.click()
    page.get_by_role("option", name=re.compile("dedicated inpainting model")).click()
    expect(strength).to_have_value("1", timeout=30_000)


def test_edit_twice_with_use_as_input_keeps_the_sequence(page, shots):
    """The Edit tab's example, then its result used as the input of a second instruction: the second result's
    summary says it continues the sequence, whose script replays both edits."""
    panel = open_tab(page, "Edit")
    pick_example(panel, 1)  # chelsea, "make it a snowy night"
    expect(panel.get_by_label("Instruction")).to_have_value(re.compile("snowy night"), timeout=60_000)
    panel.get_by_role("button", name="Edit", exact=True).click()
    expect_summary(page, "edit-summary", "Seed", timeout=180_000)
    image_loaded(page, "#edit-gallery")
    use = page.locator("#edit-use-as-input")
    expect(use).to_be_visible(timeout=30_000)
    use.click()
    expect(page.locator("#edit-sequence")).to_contain_text("Editing the result of edit 1", timeout=30_000)
    panel.get_by_label("Instruction").fill("add a red scarf")
    panel.get_by_role("button", name="Edit", exact=True).click()
    expect_summary(page, "edit-summary", "Edit 2 of a sequence", timeout=180_000)
    page.screenshot(**shot(shots, "edit"))
    result = page.locator("#edit-image img").first.get_attribute("src")  # the first result, used as input
    panel.get_by_role("button", name="Start over").click()  # the first image back, a new sequence
    expect(page.locator("#edit-sequence")).not_to_contain_text("Editing the result", timeout=30_000)
    expect(page.locator("#edit-image img").first).not_to_have_attribute("src", result or "", timeout=30_000)
    pick_example(panel, 2)  # another image: its edit starts a new sequence
    panel.get_by_role("button", name="Edit", exact=True).click()
    expect(page.locator("#edit-sequence")).not_to_contain_text("Editing the result", timeout=30_000)
    expect_summary(page, "edit-summary", "Seed", timeout=180_000)
    expect(page.locator("#edit-summary textarea")).not_to_have_value(re.compile("of a sequence"))
