"""HistoSynth Studio (the page at /) in real headless Chromium.

A live server with an API key, a real Redis (valkey) and, for the jobs test, a real RQ
worker process serves the bundled demo model. The tests paint, generate, toggle overlays,
relabel, download, segment, run a job and trigger API errors the way a person would, by
clicking and typing. With STUDIO_SCREENSHOTS=docs/figures/studio they also save the
screenshots of the README.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.pipeline import load_pipeline
from tests.conftest import REPO, synthetic_tile
from tests.service.browser import (
    canvas_colours,
    image_pixels,
    loaded,
    opaque_pixels,
    screenshot,
    severe_console_errors,
    start_chromium,
    wait_until,
)
from tests.service.conftest import API_KEY, LiveServer, make_settings, png_bytes

pytestmark = pytest.mark.integration

DEMO = "prostate-gleason"
COLOURS = {"stroma": "#e6194b", "benign": "#3cb44b", "low_grade": "#4363d8", "high_grade": "#ffe119"}
MIN_SIDE = 32


@pytest.fixture(scope="module")
def studio_server(
    service_root: Path, tiny_model_path: Path, redis_url: str
) -> Iterator[LiveServer]:
    """The bundled demo models, an API key, real Redis; two small masks under the data root."""
    settings = make_settings(
        service_root / "studio", tiny_model_path, bundled_models=REPO / "models",
        default_model=DEMO, api_key=API_KEY, redis_url=redis_url, job_retries=0,
        max_pixels=2048 * 2048, max_upload_bytes=16 * 2**20, min_mask_side=MIN_SIDE,
        max_generate_pixels=4 * 1024 * 1024,  # n=2 at 1024 and the relabel rerun
    )
    masks = settings.data_root / "small-masks"
    masks.mkdir(parents=True, exist_ok=True)
    small = np.array(Image.open(REPO / "examples" / "mask-small.png"))
    Image.fromarray(small).save(masks / "a.png")
    Image.fromarray(np.ascontiguousarray(small[::-1, ::-1])).save(masks / "b.png")
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def download_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(download_dir: Path) -> Iterator[Any]:
    chromium = start_chromium(download_dir)
    yield chromium
    chromium.quit()


def by(browser: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, css)


def all_by(browser: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, css)


def choose(browser: Any, css: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(by(browser, css)).select_by_value(value)


def type_into(browser: Any, css: str, text: str) -> None:
    field = by(browser, css)
    field.clear()
    field.send_keys(text)


def error_text(browser: Any, css: str) -> str:
    """The text of an error element once it shows."""
    wait_until(browser, lambda b: by(b, css).is_displayed(), f"the error {css}")
    return str(by(browser, css).text)


def enter_key(browser: Any) -> None:
    type_into(browser, "#api-key", API_KEY)
    by(browser, "#key-save").click()


def open_studio(browser: Any, server: LiveServer, tab: str = "draw") -> None:
    """Load the page (entering the API key if this browser session has none yet)."""
    browser.get(f"{server.url}/")
    browser.refresh()  # a fresh page even when only the #tab changed
    if not browser.execute_script("return sessionStorage.getItem('histosynth.apiKey');"):
        wait_until(browser, lambda b: by(b, "#key-error").is_displayed(), "the API key prompt")
        enter_key(browser)
    wait_until(browser, lambda b: len(all_by(b, "#class-buttons input")) == 4, "the demo model's classes")
    by(browser, f"#tab-{tab}").click()
    wait_until(browser, lambda b: by(b, f"#panel-{tab}").is_displayed(), f"the {tab} tab")


def paint(browser: Any, cls: str, start: tuple[int, int], moves: list[tuple[int, int]]) -> None:
    """Pick a brush class and drag across the canvas (offsets in CSS pixels from its centre)."""
    from selenium.webdriver.common.action_chains import ActionChains

    by(browser, f"label[data-class={cls}]").click()
    chain = ActionChains(browser).move_to_element_with_offset(by(browser, "#mask-canvas"), *start)
    chain = chain.click_and_hold()
    for dx, dy in moves:
        chain = chain.move_by_offset(dx, dy)
    chain.release().perform()


def variant_images(browser: Any, container: str = "#variants") -> list[Any]:
    return all_by(browser, f"{container} img")


def wait_for_images(browser: Any, css: str, count: int, what: str) -> list[Any]:
    def ready(b: Any) -> list[Any] | None:
        images = all_by(b, css)
        return images if len(images) == count and loaded(b, images) else None

    result: list[Any] = wait_until(browser, ready, what)
    return result


# ---- the API key -------------------------------------------------------------------------
def test_the_page_asks_for_the_api_key_and_keeps_it_for_the_session_only(
    browser: Any, studio_server: LiveServer
) -> None:
    browser.get(studio_server.url + "/")
    browser.execute_script("sessionStorage.clear(); localStorage.clear();")
    browser.refresh()
    assert "needs an API key" in error_text(browser, "#key-error")
    assert "missing API key" in error_text(browser, "#model-error")  # the API's own message
    enter_key(browser)
    wait_until(browser, lambda b: len(all_by(b, "#class-buttons input")) == 4, "the classes")
    assert not by(browser, "#key-error").is_displayed()
    assert browser.execute_script("return sessionStorage.getItem('histosynth.apiKey');") == API_KEY
    assert browser.execute_script("return localStorage.length;") == 0
    assert API_KEY not in browser.page_source
    assert by(browser, "#api-key").get_attribute("value") == ""
    names = [o.get_attribute("value") for o in all_by(browser, "#model-select option")]
    assert DEMO in names and by(browser, "#model-select").get_attribute("value") == DEMO


# ---- draw, generate, overlay, viewer, relabel, ZIP ------------------------------------------
def test_draw_generate_overlay_relabel_and_download(
    browser: Any, studio_server: LiveServer, download_dir: Path
) -> None:
    open_studio(browser, studio_server)
    assert by(browser, "#mask-canvas").get_attribute("width") == "1024"
    assert canvas_colours(browser) == {COLOURS["stroma"]: 1024 * 1024}
    by(browser, "#example-mask").click()  # glands of every class to draw over
    layout = canvas_colours(browser)
    assert set(layout) == set(COLOURS.values())
    # strokes of two classes
    by(browser, "#brush-size").send_keys("\ue014" * 40)  # right arrow: a 64 px brush
    paint(browser, "benign", (-150, -150), [(60, 0), (60, 40), (0, 60)])
    paint(browser, "high_grade", (40, 60), [(80, 0), (0, 80), (-60, 20)])
    colours = canvas_colours(browser)
    assert colours[COLOURS["benign"]] > layout[COLOURS["benign"]] + 2000
    assert colours[COLOURS["high_grade"]] > layout[COLOURS["high_grade"]] + 2000
    assert sum(colours.values()) == 1024 * 1024 and set(colours) == set(COLOURS.values())
    by(browser, "#undo").click()
    assert canvas_colours(browser)[COLOURS["high_grade"]] < colours[COLOURS["high_grade"]]
    by(browser, "#redo").click()
    assert canvas_colours(browser) == colours
    screenshot(browser, "draw")

    # generate two variants
    type_into(browser, "#gen-n", "2")
    by(browser, "#generate").click()
    images = wait_for_images(browser, "#variants img", 2, "two generated variants")
    sizes = [browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", i) for i in images]
    assert sizes == [[1024, 1024], [1024, 1024]]
    first, second = (image_pixels(browser, i) for i in images)
    assert first.shape == second.shape == (1024, 1024, 3)
    assert np.abs(first.astype(int) - second.astype(int)).mean() > 1.0
    seeds = [int(i.get_attribute("data-seed")) for i in images]
    assert seeds[1] == seeds[0] + 1
    assert f"seed {seeds[0]}" in by(browser, "#variants").text

    # overlay: none -> outline -> translucent colours
    overlays = all_by(browser, "#variants canvas.overlay")
    assert not any(o.is_displayed() for o in overlays)
    choose(browser, "#overlay", "outline")
    assert all(o.is_displayed() for o in overlays)
    outline = opaque_pixels(browser, overlays[0])
    assert 0 < outline < 1024 * 1024 // 4
    choose(browser, "#overlay", "fill")
    assert opaque_pixels(browser, overlays[0]) == 1024 * 1024
    choose(browser, "#overlay", "outline")
    screenshot(browser, "variants")

    # full resolution with zoom
    all_by(browser, "#variants button.stack")[1].click()
    wait_until(browser, lambda b: by(b, "#viewer").is_displayed(), "the full-resolution viewer")
    assert str(seeds[1]) in by(browser, "#viewer-title").text
    by(browser, "#viewer [data-zoom='1']").click()
    assert by(browser, "#viewer-stack").size["width"] == 1024
    by(browser, "#viewer [data-zoom='2']").click()
    assert by(browser, "#viewer-stack").size["width"] == 2048
    assert by(browser, "#viewer-overlay").is_displayed()
    by(browser, "#viewer-close").click()
    assert not by(browser, "#viewer").is_displayed()

    # relabel benign -> high grade, rerun with the same seeds: before/after pairs
    choose(browser, "#relabel-from", "1")
    choose(browser, "#relabel-to", "3")
    by(browser, "#relabel").click()
    pairs = wait_for_images(browser, "#before-after img", 4, "the before/after pairs")
    before, after = pairs[0::2], pairs[1::2]
    assert [int(i.get_attribute("data-seed")) for i in after] == seeds
    assert [int(i.get_attribute("data-seed")) for i in before] == seeds
    changed = np.abs(image_pixels(browser, before[0]).astype(int) - image_pixels(browser, after[0]).astype(int))
    assert changed.mean() > 0.5

    # all variants as the API's ZIP
    by(browser, "#download-zip").click()
    archive = wait_until(
        browser, lambda b: downloaded(download_dir / f"histosynth-{DEMO}-{seeds[0]}.zip"),
        "the ZIP download",
    )
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert [v["seed"] for v in manifest["variants"]] == seeds
        zipped = np.array(Image.open(io.BytesIO(zf.read("variant_000.png"))).convert("RGB"))
    assert np.array_equal(zipped, first)
    assert severe_console_errors(browser) == []


def downloaded(path: Path) -> Path | None:
    """``path`` once the browser has finished writing it."""
    return path if path.is_file() and path.stat().st_size > 0 else None


# ---- errors beside their control, loading and saving masks ---------------------------------
def test_api_errors_show_beside_the_control(browser: Any, studio_server: LiveServer, tmp_path: Path) -> None:
    open_studio(browser, studio_server)
    type_into(browser, "#new-width", "24")
    type_into(browser, "#new-height", "20")
    by(browser, "#new-mask").click()
    assert by(browser, "#mask-canvas").get_attribute("width") == "24"
    by(browser, "#generate").click()
    message = error_text(browser, "#generate-error")
    assert message == f"the mask is 24x20; both sides must be at least {MIN_SIDE} pixels"
    assert by(browser, "#generate-error").get_attribute("data-code") == "image_too_small"

    bad = tmp_path / "bad-values.png"
    bad.write_bytes(png_bytes(np.full((40, 40), 7, np.uint8)))
    by(browser, "#mask-file").send_keys(str(bad))
    by(browser, "#load-mask").click()
    assert "values [7] that are not in the class table" in error_text(browser, "#load-error")
    assert by(browser, "#mask-canvas").get_attribute("width") == "24"  # unchanged


def test_load_a_raw_values_mask_and_download_it_back(
    browser: Any, studio_server: LiveServer, download_dir: Path
) -> None:
    open_studio(browser, studio_server)
    raw = REPO / "examples" / "mask-small.png"  # raw values 4 stroma, 3 benign, 0 low, 1 high
    by(browser, "#mask-file").send_keys(str(raw))
    by(browser, "#load-mask").click()
    wait_until(browser, lambda b: by(b, "#mask-canvas").get_attribute("width") == "256", "the loaded mask")
    values = np.array(Image.open(raw))
    expected = {COLOURS["stroma"]: 4, COLOURS["benign"]: 3, COLOURS["low_grade"]: 0, COLOURS["high_grade"]: 1}
    colours = canvas_colours(browser)
    assert colours == {c: int((values == v).sum()) for c, v in expected.items() if (values == v).any()}
    by(browser, "#download-mask-values").click()
    saved = wait_until(browser, lambda b: downloaded(download_dir / f"mask-{DEMO}-values.png"), "the mask")
    assert np.array_equal(np.array(Image.open(saved)), values)


def test_example_layout_fill_and_keyboard(browser: Any, studio_server: LiveServer) -> None:
    from selenium.webdriver.common.keys import Keys

    open_studio(browser, studio_server)
    by(browser, "#new-mask").click()
    by(browser, "#example-mask").click()
    colours = canvas_colours(browser)
    assert set(colours) == set(COLOURS.values())  # every class in the example layout
    canvas = by(browser, "#mask-canvas")
    canvas.send_keys("f")  # fill tool, from the keyboard
    canvas.send_keys("4")  # high grade
    before = canvas_colours(browser)
    canvas.send_keys(Keys.HOME)  # no-op key: nothing changes
    assert canvas_colours(browser) == before
    canvas.send_keys(Keys.SPACE)  # fill at the keyboard cursor (the centre)
    after = canvas_colours(browser)
    assert after != before and after[COLOURS["high_grade"]] > before[COLOURS["high_grade"]]
    canvas.send_keys(Keys.CONTROL, "z")
    assert canvas_colours(browser) == before
    # another model: its classes on the brushes; a mask with classes it lacks starts over
    choose(browser, "#model-select", "prostate-binary")
    wait_until(browser, lambda b: len(all_by(b, "#class-buttons input")) == 2, "the binary classes")
    assert canvas_colours(browser) == {COLOURS["stroma"]: 1024 * 1024}
    assert "gland" in by(browser, "#class-buttons").text


# ---- segment ---------------------------------------------------------------------------------
def test_segment_a_tile_see_the_legend_and_edit_it(
    browser: Any, studio_server: LiveServer, tmp_path: Path
) -> None:
    # a tile the bundled model generated from the example mask: the screenshot of this test is
    # in the README, where the real tiles of ../shared/data may not be shown (their licence)
    tile = tmp_path / "generated.png"
    mask = np.array(Image.open(REPO / "examples" / "mask.png"))[:512, :512]
    pipe = load_pipeline(REPO / "models" / "prostate-gleason.pt", "cpu")
    Image.fromarray(pipe.generate(mask, 1, seed=3).images[0]).save(tile)
    width = Image.open(tile).size[0]
    open_studio(browser, studio_server, "segment")
    by(browser, "#segment-file").send_keys(str(tile))
    by(browser, "#segment").click()
    wait_until(browser, lambda b: len(all_by(b, "#segment-legend li")) == 4, "the class legend")
    overlay = by(browser, "#segment-overlay")
    assert loaded(browser, [overlay, by(browser, "#segment-image")])
    assert browser.execute_script("return arguments[0].naturalWidth", overlay) == width
    legend = by(browser, "#segment-legend").text
    assert all(name in legend for name in COLOURS)
    shares = [float(s.text.rstrip(" %")) for s in all_by(browser, "#segment-legend .share")]
    assert abs(sum(shares) - 100) < 0.5
    screenshot(browser, "segment")
    by(browser, "#segment-to-canvas").click()
    wait_until(browser, lambda b: by(b, "#panel-draw").is_displayed(), "the draw tab")
    assert by(browser, "#mask-canvas").get_attribute("width") == str(width)
    assert set(canvas_colours(browser)) <= set(COLOURS.values())


def test_a_tiff_tile_is_shown_through_the_server(browser: Any, studio_server: LiveServer, tmp_path: Path) -> None:
    """Chromium cannot display a TIFF: the page shows the server's PNG of it under the classes."""
    tile = tmp_path / "tile.tif"
    Image.fromarray(synthetic_tile(3, size=256)[0]).save(tile)
    open_studio(browser, studio_server, "segment")
    by(browser, "#segment-file").send_keys(str(tile))
    by(browser, "#segment").click()
    wait_until(browser, lambda b: len(all_by(b, "#segment-legend li")) == 4, "the class legend")
    image = by(browser, "#segment-image")
    wait_until(browser, lambda b: image.is_displayed() and loaded(b, [image]), "the converted tile")
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 256
    assert browser.execute_script("return arguments[0].src", image).startswith("blob:")


# ---- jobs --------------------------------------------------------------------------------------
def test_run_an_augmentation_job_to_100_percent_and_cancel_one(
    browser: Any, studio_server: LiveServer, redis_conn: Any, rq_worker: Any
) -> None:
    rq_worker(env=studio_server.settings.to_env(), queues=("augment",))
    open_studio(browser, studio_server, "jobs")
    type_into(browser, "#job-source", "small-masks")
    type_into(browser, "#job-output", "studio/run1")
    type_into(browser, "#job-variants", "2")
    type_into(browser, "#job-seed", "7")
    choose(browser, "#job-transforms", "flips")
    by(browser, "#job-submit").click()
    job = wait_until(browser, lambda b: all_by(b, "#job-list li.job"), "the job in the list")[0]
    job_id = job.get_attribute("data-job-id")
    item = f"#job-list li[data-job-id='{job_id}']"
    wait_until(browser, lambda b: by(b, f"{item} .status").text == "finished", "the job to finish")
    assert by(browser, f"{item} .progress-text").text.startswith("100 % · 12 / 12 pairs")
    assert by(browser, f"{item} progress").get_attribute("value") == "100"
    output = studio_server.settings.data_root / "studio" / "run1"
    assert by(browser, f"{item} code.output").text == output.resolve().as_uri()
    wait_for_images(browser, f"{item} .pair-figure img", 8, "the first four pairs")
    lines = (output / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 12  # 2 masks x 3 (flips) x 2 variants
    screenshot(browser, "jobs")

    type_into(browser, "#job-output", "studio/run2")
    type_into(browser, "#job-variants", "256")
    choose(browser, "#job-transforms", "all")
    by(browser, "#job-submit").click()
    wait_until(browser, lambda b: len(all_by(b, "#job-list li.job")) == 2, "the second job")
    second = all_by(browser, "#job-list li.job")[0]
    assert second.get_attribute("data-job-id") != job_id
    cancel = second.find_element("css selector", "button.cancel")
    wait_until(browser, lambda b: cancel.is_displayed(), "the cancel button")
    cancel.click()
    wait_until(browser, lambda b: second.find_element("css selector", ".status").text == "canceled",
               "the cancelled job")
    assert not cancel.is_displayed()
    written = list((studio_server.settings.data_root / "studio" / "run2").glob("records/*.json"))
    assert len(written) < 2 * 8 * 256


# ---- models -----------------------------------------------------------------------------------
def test_models_tab_shows_classes_training_and_evaluation(browser: Any, studio_server: LiveServer) -> None:
    open_studio(browser, studio_server, "models")
    card = f"article[data-model='{DEMO}']"
    wait_until(browser, lambda b: all_by(b, card), "the demo model's card")
    text = by(browser, card).text
    for needle in ("stroma", "high_grade", "#ffe119", "S4 (1/16)", "held out", "test101",
                   "segmentation mIoU", "SWD to real"):
        assert needle in text, needle
    assert all_by(browser, "article[data-model='tiny']")
    assert severe_console_errors(browser) == []


def test_every_control_has_a_label_and_buttons_are_buttons(browser: Any, studio_server: LiveServer) -> None:
    open_studio(browser, studio_server)
    unnamed = browser.execute_script(
        """
        const named = (e) => (e.labels && e.labels.length) || e.getAttribute('aria-label')
          || e.getAttribute('aria-labelledby') || (e.tagName === 'BUTTON' && e.textContent.trim());
        return [...document.querySelectorAll('input, select, textarea, button')]
          .filter((e) => e.type !== 'hidden' && !named(e)).map((e) => e.outerHTML.slice(0, 80));
        """
    )
    assert unnamed == []
    clickable = browser.execute_script(
        "return [...document.querySelectorAll('[onclick], div[tabindex], span[tabindex]')].length;"
    )
    assert clickable == 0
    # the tabs work from the keyboard
    by(browser, "#tab-draw").send_keys("\ue014")  # right arrow
    assert by(browser, "#panel-segment").is_displayed()
    assert browser.switch_to.active_element.get_attribute("id") == "tab-segment"
