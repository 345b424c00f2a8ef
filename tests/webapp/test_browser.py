"""People's sessions in a real browser: Debian's Chromium driven by Playwright.

One ``pirtune-serve`` on a free localhost port serves the module; each test
opens a fresh browser context in headless Chromium (``/usr/bin/chromium``,
never a downloaded browser; ``make browser`` installs it; ``PIRTUNE_CHROMIUM``
names another; without one the tests skip, or fail when ``CI`` is set). The
tests click through rounds, undo, finish, use the keyboard, slow the network
down, reload, and look at the page on a phone, and check the page against the
server and the database. With
``PIRTUNE_SCREENSHOTS=<folder>`` they also save the README's screenshots
there (``make screenshots``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from pirtune.webapp import InteractionLog
from pirtune.webapp.serve import launch

CHROMIUM = Path(os.environ.get("PIRTUNE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 760, "height": 900}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 3,
         "is_mobile": True, "has_touch": True}
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
# The largest difference (0–255) between the images on screen and the server's images of
# the session's open round, fetched past the browser's cache.
ON_SCREEN_VS_SERVER = """async () => {
  const pixels = source => {
    const width = source.naturalWidth || source.width;
    const height = source.naturalHeight || source.height;
    const canvas = Object.assign(document.createElement('canvas'), {width, height});
    canvas.getContext('2d').drawImage(source, 0, 0);
    return canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  };
  const s = await (await fetch('/api/sessions/' + state.session_id, {cache: 'no-store'})).json();
  const shown = ['#current', '#c0 img', '#c1 img', '#c2 img', '#c3 img']
    .map(selector => pixels(document.querySelector(selector)));
  let worst = 0;
  for (const [i, url] of [s.current, ...s.candidates].entries()) {
    const blob = await (await fetch(url, {cache: 'no-store'})).blob();
    const server = pixels(await createImageBitmap(blob));
    worst = Math.max(worst, ...server.map((v, k) => Math.abs(v - shown[i][k])));
  }
  return worst;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """(base URL, database) of one ``pirtune-serve`` for the module's tests."""
    _require_chromium(CHROMIUM)  # before the server: a skip costs no start-up
    db = tmp_path_factory.mktemp("webapp") / "interactions.db"
    process, base = launch(db)
    yield base, db
    process.send_signal(signal.SIGKILL)
    process.wait()


def _require_chromium(path: Path) -> None:
    """Skip, loudly, without a Chromium at ``path``; under CI (``CI`` set) fail instead."""
    if path.is_file():
        return
    missing = (f"BROWSER TESTS NOT RUN: no Chromium at {path}; run `make browser` "
               "(Debian's chromium package) or set PIRTUNE_CHROMIUM=<chromium binary>")
    if os.environ.get("CI"):
        pytest.fail(f"{missing} (CI is set, and there the browser tests must run)")
    pytest.skip(missing)


def test_a_missing_chromium_skips_loudly_and_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"BROWSER TESTS NOT RUN: no Chromium at "
                                                     r".*PIRTUNE_CHROMIUM"):
        _require_chromium(tmp_path / "chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        _require_chromium(tmp_path / "chromium")
    _require_chromium(Path(__file__))  # any file there: nothing to say


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _require_chromium(CHROMIUM)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser) -> Iterator[BrowserContext]:
    """A fresh profile (no cache, no storage) at the desktop size."""
    context = browser.new_context(viewport=DESKTOP)
    yield context
    context.close()


def _screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    out = tmp_path / name
    page.screenshot(path=out, full_page=True)
    folder = os.environ.get("PIRTUNE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(folder) / name)
    return out


def _watch(page: Page) -> list[str]:
    """Collect the page's script errors and console errors (a 404 favicon is one)."""
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    return errors


def _round_shown(page: Page, round_: int) -> None:
    """Wait until the page shows ``round_`` with every visible image loaded."""
    page.wait_for_function("r => state !== null && state.round === r", arg=round_)
    expect(page.locator("#session")).to_be_visible()
    expect(page.locator("#round")).to_have_text(str(round_))
    page.wait_for_function(IMAGES_LOADED)


def _start(page: Page, base: str, kind: str = "coast") -> str:
    """Open the page, start a session of ``kind``; return its id once round 1 is on show."""
    page.goto(base)
    page.select_option("#classes", label=kind)
    page.get_by_role("button", name="Start").click()
    _round_shown(page, 1)
    return page.evaluate("() => state.session_id")


def test_a_person_clicks_five_rounds_undoes_one_and_finishes(server, context, tmp_path):
    """The person picks the brightest candidate each round (read off the page's pixels)."""
    base, db = server
    page = context.new_page()
    errors = _watch(page)
    session_id = _start(page, base)
    clicked = []
    for round_ in range(1, 6):
        pick = page.evaluate(BRIGHTEST)   # this person wants a bright scene
        if round_ == 3:
            page.keyboard.press(KEYS[pick])            # one round by key
        else:
            page.click(f"#c{pick}")
        clicked.append(pick)
        _round_shown(page, round_ + 1)
        # The slot just tapped holds another image now: no focus ring carries over to it.
        assert page.evaluate("() => document.activeElement.id") != f"c{pick}"
        # The path: the start image, then each pick, with its round.
        expect(page.locator("#path img")).to_have_count(round_ + 1)
    expect(page.locator("#path figcaption")).to_have_text(
        ["start", "1", "2", "3", "4", "5"])
    expect(page.locator("#step")).to_contain_text(
        re.compile(r"differ from the middle image \(your last pick\) by about \d+/255"))
    _screenshot(page, "webapp.png", tmp_path)

    page.get_by_role("button", name="Undo last pick").click()
    _round_shown(page, 5)
    expect(page.locator("#path img")).to_have_count(5)

    page.get_by_role("button", name="I am satisfied").click()
    expect(page.locator("#final")).to_be_visible()
    expect(page.locator("#session")).to_be_hidden()
    page.wait_for_function(IMAGES_LOADED)
    expect(page.locator("#description")).to_contain_text("coast scene")
    expect(page.locator("#description")).to_contain_text("found in 4 picks")
    # The final image is the last one picked, and the path stays on the final screen.
    assert page.get_attribute("#final-image", "src") == page.get_attribute(
        "#path figure:last-child img", "src")
    expect(page.locator("#path img")).to_have_count(5)
    assert page.get_attribute("#download", "href").startswith(
        f"/api/sessions/{session_id}/final.png")
    assert "scale=8" in page.get_attribute("#download-large", "href")
    _screenshot(page, "webapp_final.png", tmp_path)
    assert errors == []

    log = InteractionLog(db)
    assert log.choices(session_id) == clicked[:4]
    assert log.undone(session_id) == [(5, clicked[4])]
    info = log.session(session_id)
    assert info["finished"] is not None and info["class"] == 0
    shown = [s for s in log.shown() if s.session_id == session_id]
    assert sorted({s.round for s in shown}) == [1, 2, 3, 4, 5]
    assert len(shown) == 20
    assert [s.slot for s in shown if s.picked] == clicked[:4]


def test_after_an_undo_and_a_different_pick_the_screen_shows_the_servers_images(
        server, context):
    """Bug 1: no image on screen is a cached one from the path that was undone."""
    base, db = server
    page = context.new_page()
    session_id = _start(page, base)
    page.click("#c0")
    _round_shown(page, 2)
    assert page.evaluate(ON_SCREEN_VS_SERVER) == 0
    page.keyboard.press("Backspace")
    _round_shown(page, 1)
    page.click("#c2")
    _round_shown(page, 2)
    assert page.evaluate(ON_SCREEN_VS_SERVER) == 0
    assert InteractionLog(db).choices(session_id) == [2]


def test_enter_activates_the_focused_control_and_never_finishes_by_itself(server, context):
    """Bug 2: Enter on a candidate picks it, on Undo undoes; only the finish button finishes."""
    base, db = server
    page = context.new_page()
    session_id = _start(page, base)
    page.focus("#c2")
    page.keyboard.press("Enter")
    _round_shown(page, 2)
    page.focus("#undo")
    page.keyboard.press("Enter")
    _round_shown(page, 1)
    page.focus("#c3")
    page.keyboard.press("Enter")
    _round_shown(page, 2)
    page.evaluate("() => document.activeElement.blur()")
    page.keyboard.press("Enter")               # focus nowhere in particular
    page.wait_for_timeout(300)
    expect(page.locator("#session")).to_be_visible()
    log = InteractionLog(db)
    assert log.choices(session_id) == [3] and log.undone(session_id) == [(1, 2)]
    assert log.session(session_id)["finished"] is None


def test_no_pick_is_taken_before_its_images_have_loaded(server, context):
    """Bug 3: with 700 ms of latency, arrow keys during loading do nothing, and so do
    a held key's repeats."""
    base, db = server
    page = context.new_page()
    session_id = _start(page, base)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 700, "downloadThroughput": -1, "uploadThroughput": -1})
    with page.expect_response(lambda r: r.url.endswith("/choices")):
        page.click("#c0")
    deadline = time.monotonic() + 10
    # Press keys until round 2 is on show with its images. The check and the key press
    # run in one turn of the page's event loop, so no press can land after round 2 has
    # appeared (which would be a real pick, not a bug).
    press_unless_shown = ("""() => {
        const label = document.getElementById('round').textContent;
        const loaded = (""" + IMAGES_LOADED + """)();
        if (!(label === '2' && loaded))
            document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowUp', bubbles: true}));
        return [label, loaded];
    }""")
    while True:
        label, loaded = page.evaluate(press_unless_shown)
        assert label == "1" or loaded, "round 2 is announced over round 1's images"
        if label == "2" and loaded:
            break
        assert time.monotonic() < deadline
        page.wait_for_timeout(50)
    page.wait_for_timeout(1000)                 # any pick sent would have landed by now
    assert InteractionLog(db).choices(session_id) == [0]
    for _ in range(5):   # a held key repeats; only the first press picks
        page.evaluate("""() => document.dispatchEvent(new KeyboardEvent('keydown',
                             {key: 'ArrowUp', repeat: true, bubbles: true}))""")
    page.wait_for_timeout(1000)
    assert InteractionLog(db).choices(session_id) == [0]
    expect(page.locator("#path figure")).to_have_count(2)
    assert page.evaluate("""() => [...document.querySelectorAll('#path img')]
                                  .every(i => i.src.includes('/images/'))""")


@pytest.mark.parametrize("size", ["phone", "narrow desktop"])
def test_the_page_fits_a_phone(server, browser, tmp_path, size):
    """Gap 9: at 390 px the board fits the screen, the images are large and the text legible."""
    base, _ = server
    options = PHONE if size == "phone" else {"viewport": {"width": 390, "height": 844}}
    context = browser.new_context(**options)
    try:
        page = context.new_page()
        _start(page, base)
        page.click("#c1")
        _round_shown(page, 2)
        assert page.evaluate("() => window.innerWidth") == 390
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        for selector in ("#current", "#c0 img", "#c1 img", "#c2 img", "#c3 img"):
            box = page.locator(selector).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
            assert box["width"] >= 100, selector
        same = page.get_by_role("button", name="These look the same")
        box = same.bounding_box()                        # on screen, and a finger's size
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] >= 30
        size_px = page.evaluate(
            "() => parseFloat(getComputedStyle(document.querySelector('#session p')).fontSize)")
        assert size_px >= 14
        if size == "phone":
            _screenshot(page, "webapp_phone.png", tmp_path)
    finally:
        context.close()


RING = "rgb(26, 115, 232)"   # the candidates' highlight colour (#1a73e8)


def test_a_tapped_slot_shows_no_ring_on_the_next_rounds_image(server, browser):
    """On a touch screen :hover sticks to the tapped element, so a hover ring would sit on
    the next round's image in that slot: the page rings only on devices that hover."""
    base, _ = server
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        _start(page, base)
        # A click leaves the pointer over the slot, as a real phone's tap leaves :hover on it.
        page.click("#c1")
        _round_shown(page, 2)
        assert not page.evaluate("() => matchMedia('(hover: hover)').matches")
        colour = page.evaluate("() => getComputedStyle(document.querySelector('#c1'))"
                               ".borderTopColor")
        assert colour != RING
    finally:
        context.close()


def test_a_reload_resumes_the_session_and_its_final_screen(server, context):
    """Gap 10: the session id lives in the URL; a reload continues where the person was."""
    base, _ = server
    page = context.new_page()
    session_id = _start(page, base)
    page.click("#c0")
    _round_shown(page, 2)
    page.click("#c3")
    _round_shown(page, 3)
    before = page.evaluate("() => [state.current, ...state.candidates]")
    assert session_id in page.url
    page.reload()
    _round_shown(page, 3)
    assert page.evaluate("() => [state.current, ...state.candidates]") == before
    expect(page.locator("#path figure")).to_have_count(3)
    page.get_by_role("button", name="I am satisfied").click()
    expect(page.locator("#final")).to_be_visible()
    page.reload()
    expect(page.locator("#final")).to_be_visible()
    expect(page.locator("#description")).to_contain_text("found in 2 picks")


def test_errors_are_sentences_with_a_retry(server, context):
    """Gap 13: a dropped connection or a server error reads as a sentence, and Retry works."""
    base, db = server
    page = context.new_page()
    session_id = _start(page, base)
    page.route("**/choices", lambda route: route.abort("connectionfailed"))
    page.click("#c1")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text("could not reach the server")
    page.unroute("**/choices")
    page.route("**/choices", lambda route: route.fulfill(
        status=500, body="Internal Server Error", content_type="text/plain"))
    page.get_by_role("button", name="Try again").click()
    expect(page.locator("#error")).to_contain_text("went wrong on the server")
    assert "Unexpected token" not in page.inner_text("#error")
    page.unroute("**/choices")
    page.get_by_role("button", name="Try again").click()
    _round_shown(page, 2)
    expect(page.locator("#error")).to_be_hidden()
    assert InteractionLog(db).choices(session_id) == [1]


def test_a_session_started_from_a_prior_says_so_in_one_line(server, context, tmp_path):
    """With ``--prior`` the page says the search starts from earlier people's picks (after a
    pick and a reload too); without it, the line stays hidden."""
    import torch

    from pirtune.estimator.choice import ChoiceNetwork, FrozenChoiceModel
    from pirtune.estimator.files import save_choice_model
    from pirtune.paths import SHIPPED_GENERATOR
    from pirtune.webapp.export import bundle_sha256

    line = "Starting from what earlier people picked."
    page = context.new_page()
    _start(page, server[0])
    expect(page.get_by_text(line)).to_be_hidden()

    network = {"_target_": "pirtune.estimator.network.PIREstimator", "backbone": "small_cnn",
               "bins": 2, "resolution": 32, "pretrained": False}
    torch.manual_seed(0)
    save_choice_model(FrozenChoiceModel(ChoiceNetwork.from_config(network), torch.zeros(4)),
                      network, tmp_path / "prior.pt",
                      generators=[bundle_sha256(SHIPPED_GENERATOR)])
    process, base = launch(tmp_path / "prior.db", options=["--prior", str(tmp_path / "prior.pt")])
    try:
        errors = _watch(page)
        _start(page, base)
        expect(page.get_by_text(line)).to_be_visible()
        page.click("#c0")
        _round_shown(page, 2)
        page.reload()
        _round_shown(page, 2)
        expect(page.get_by_text(line)).to_be_visible()
        assert errors == []
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_a_same_answer_goes_from_the_page_to_the_choice_model(server, context, tmp_path):
    """"These look the same" by button and by key: the round is answered, the middle image
    stays; the log holds (slot NULL, same 1), the export writes "same", and the choice
    model reads it and learns its tie term from it."""
    import sqlite3

    import torch

    from pirtune.estimator.choice import SAME_CODE, fit_choice_model, read_choice_rounds
    from pirtune.models.bundle import load_sampler
    from pirtune.paths import SHIPPED_GENERATOR
    from pirtune.webapp.export import export_pir_dataset

    base, db = server
    page = context.new_page()
    errors = _watch(page)
    session_id = _start(page, base)
    middle = page.evaluate("() => state.current")
    first = page.evaluate("() => state.candidates")
    page.get_by_role("button", name="These look the same").click()
    _round_shown(page, 2)
    assert page.evaluate("() => state.current") == middle       # no pick: the middle stays
    assert page.evaluate("() => state.candidates") != first     # new candidates
    expect(page.locator("#path img")).to_have_count(1)
    page.keyboard.press("s")                                    # the key, once
    _round_shown(page, 3)
    page.click("#c0")
    _round_shown(page, 4)
    expect(page.locator("#path figcaption")).to_have_text(["start", "3"])
    assert errors == []

    log = InteractionLog(db)
    assert log.choices(session_id) == ["same", "same", 0]
    rows = sqlite3.connect(db).execute(
        "SELECT round, slot, same FROM choices WHERE session_id = ? ORDER BY round",
        (session_id,)).fetchall()
    assert rows == [(1, None, 1), (2, None, 1), (3, 0, 0)]
    shown = [s for s in log.shown(answered=True) if s.session_id == session_id]
    assert [s.round for s in shown if s.same] == [1] * 4 + [2] * 4
    assert [s.slot for s in shown if s.picked] == [0]

    generator = load_sampler(SHIPPED_GENERATOR)[0]
    out = export_pir_dataset(log, tmp_path / "pir_data", generator)
    table = (out / "rounds.csv").read_text().splitlines()
    mine = [line.split(",") for line in table[1:] if line.startswith(session_id)]
    assert [(row[1], row[-1]) for row in mine] == [("1", "same"), ("2", "same"), ("3", "0")]
    rounds = read_choice_rounds(out)
    answers = [int(p) for p, s in zip(rounds.picked, rounds.sessions, strict=True)
               if s == session_id]
    assert answers == [SAME_CODE, SAME_CODE, 0]
    network = {"_target_": "pirtune.estimator.network.PIREstimator", "backbone": "small_cnn",
               "bins": 2, "resolution": rounds.images.shape[-1], "pretrained": False}
    module, _ = fit_choice_model(network, rounds, rounds.subset(torch.tensor([], dtype=int)),
                                 epochs=1, batch_size=8, seed=0)
    assert float(module.tie.detach()) != 0.0   # the "same" rounds moved the tie term
