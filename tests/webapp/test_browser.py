"""A person's session in a real browser: Debian's Chromium driven by Playwright.

The test starts ``pirtune-serve`` on a free localhost port and headless
Chromium (``/usr/bin/chromium``, never a downloaded browser; ``make browser``
installs it; ``PIRTUNE_CHROMIUM`` names another) with a fresh profile, then
clicks through five rounds, undoes one, finishes, and checks the page and the
database. With ``PIRTUNE_SCREENSHOTS=<folder>`` it also saves the README's
screenshots there (``make screenshots``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from pirtune.webapp import InteractionLog

CHROMIUM = Path(os.environ.get("PIRTUNE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
IMAGES_LOADED = """() => [...document.images].filter(i => i.offsetParent !== null)
                                          .every(i => i.complete && i.naturalWidth > 0)"""

KEYS = ["ArrowRight", "ArrowLeft", "ArrowUp", "ArrowDown"]   # slots 0–3 by key
BRIGHTEST = """() => [0, 1, 2, 3].map(i => {
  const img = document.querySelector('#c' + i + ' img');
  const canvas = Object.assign(document.createElement('canvas'),
                               {width: img.naturalWidth, height: img.naturalHeight});
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  return context.getImageData(0, 0, canvas.width, canvas.height).data
    .reduce((sum, value, k) => k % 4 === 3 ? sum : sum + value, 0);
}).reduce((best, value, i, all) => value > all[best] ? i : best, 0)"""


def _screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    page.screenshot(path=out, full_page=True)
    folder = os.environ.get("PIRTUNE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(folder) / name)
    return out


def _round_shown(page: Page, round_: int) -> None:
    """Wait until the page shows ``round_`` with every visible image loaded."""
    page.wait_for_function("r => state !== null && state.round === r", arg=round_)
    expect(page.locator("#session")).to_be_visible()
    expect(page.locator("#round")).to_have_text(str(round_))
    page.wait_for_function(IMAGES_LOADED)


def test_a_person_clicks_five_rounds_undoes_one_and_finishes(tmp_path, serve):
    """The person picks the brightest candidate each round (read off the page's pixels)."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)")
    db = tmp_path / "interactions.db"
    _, base = serve(db)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 760, "height": 900})
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(base)
            page.select_option("#classes", label="coast")
            page.get_by_role("button", name="Start").click()
            _round_shown(page, 1)
            session_id = page.evaluate("() => state.session_id")

            clicked = []
            for round_ in range(1, 6):
                pick = page.evaluate(BRIGHTEST)   # this person wants a bright scene
                if round_ == 3:
                    page.keyboard.press(KEYS[pick])            # one round by key
                else:
                    page.click(f"#c{pick}")
                clicked.append(pick)
                _round_shown(page, round_ + 1)
                expect(page.locator("#path img")).to_have_count(round_)
            # The path keeps the picked images' pixels (data: URLs), every one loaded.
            assert page.evaluate("""() => [...document.querySelectorAll('#path img')]
                .every(i => i.src.startsWith('data:image/png') && i.naturalWidth === 32)""")
            _screenshot(page, "webapp.png", tmp_path)

            page.get_by_role("button", name="Undo last pick").click()
            _round_shown(page, 5)
            expect(page.locator("#path img")).to_have_count(4)

            page.get_by_role("button", name="I am satisfied").click()
            expect(page.locator("#final")).to_be_visible()
            expect(page.locator("#session")).to_be_hidden()
            page.wait_for_function(IMAGES_LOADED)
            assert page.evaluate(
                "() => document.getElementById('final-image').naturalWidth") == 32
            expect(page.locator("#description")).to_contain_text("coast scene")
            expect(page.locator("#description")).to_contain_text("found in 4 picks")
            href = page.get_attribute("#download", "href")
            assert href.startswith(f"/api/sessions/{session_id}/images/5/")
            _screenshot(page, "webapp_final.png", tmp_path)
            assert errors == []
        finally:
            browser.close()

    log = InteractionLog(db)
    assert log.choices(session_id) == clicked[:4]
    assert log.undone(session_id) == [(5, clicked[4])]
    info = log.session(session_id)
    assert info["finished"] is not None and info["class"] == 0
    shown = [s for s in log.shown() if s.session_id == session_id]
    assert sorted({s.round for s in shown}) == [1, 2, 3, 4, 5]
    assert len(shown) == 20
    assert [s.slot for s in shown if s.picked] == clicked[:4]
