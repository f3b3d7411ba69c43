"""End to end: the FiftyOne App on loopback, driven in headless Chromium (Debian's `chromium`
through Playwright), runs `detect_deepfakes` from the operator browser; the scores land on the
samples. A screenshot of each step is saved under the test's temp dir."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = str(REPO / "plugins")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="Debian chromium not installed (apt-get install chromium)"
    ),
]

fo = pytest.importorskip("fiftyone")
sync_api = pytest.importorskip("playwright.sync_api")

from curate import DeepfakeScorer  # noqa: E402

DEFAULT_HUB_MODEL = "prithivMLmods/open-deepfake-detection"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_dataset(photo_paths, broken_images, monkeypatch):
    if fo.config.plugins_dir != PLUGINS:
        fo.config.plugins_dir = PLUGINS
    # The App server is a subprocess: it inherits this environment. No CURATE_MODEL, so the
    # form opens on the Hub default, which cannot load offline (HF_HUB_OFFLINE=1).
    monkeypatch.delenv("CURATE_MODEL", raising=False)
    ds = fo.Dataset(f"curate-e2e-{os.getpid()}-{time.time_ns()}", persistent=True)
    ds.add_samples([fo.Sample(filepath=p) for p in photo_paths + [broken_images["truncated"]]])
    yield ds
    ds.delete()


def _run_detect_in_app(page, url: str, ds, model: str, shots: Path) -> None:
    page.goto(url, timeout=60_000)
    # the grid's first thumbnail is in the page (its checkbox stays hidden until hovered)
    page.locator('[data-cy="looker-checkbox-input-"]').first.wait_for(
        state="attached", timeout=90_000
    )
    page.wait_for_timeout(1500)  # let the grid settle before the hotkey

    # Operator browser: backtick, search, pick our operator.
    page.keyboard.press("`")
    page.keyboard.type("Detect deepfakes")
    choice = page.get_by_text("detect_deepfakes", exact=True)
    choice.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "1-operator-browser.png"))
    choice.click()

    # The form validates the model in place: the Hub default cannot load offline.
    page.get_by_text("Could not load model").first.wait_for(timeout=60_000)
    execute = page.get_by_role("button", name="Execute", exact=True)
    assert execute.is_disabled()
    page.screenshot(path=str(shots / "2-form-invalid-model.png"))

    page.locator(f'input[value="{DEFAULT_HUB_MODEL}"]').fill(model)
    page.get_by_text("Could not load model").first.wait_for(state="detached", timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('button')].some("
        "b => b.textContent.trim() === 'Execute' && !b.disabled)",
        timeout=60_000,
    )
    page.screenshot(path=str(shots / "3-form-ready.png"))
    execute.click()

    deadline = time.time() + 120
    while time.time() < deadline and ds.exists("fake_prob").count() < len(ds) - 1:
        time.sleep(0.5)
    # The operator asks the App to reload: the new field shows in the sidebar.
    page.get_by_text("fake_prob", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("Scored 6/6 samples (1 unreadable)").wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "4-progress-done.png"))
    page.get_by_role("button", name="Done", exact=True).click()
    page.wait_for_timeout(2000)
    page.screenshot(path=str(shots / "5-scored.png"), full_page=True)

    # Act on the scores with the form's defaults: tag what is synthetic at 0.5.
    page.keyboard.press("`")
    page.keyboard.type("Act on deepfake scores")
    choice = page.get_by_text("apply_deepfake_threshold", exact=True)
    choice.wait_for(timeout=30_000)
    choice.click()
    page.get_by_text("kept,", exact=False).first.wait_for(timeout=60_000)  # outcome preview
    page.screenshot(path=str(shots / "6-act-form.png"))
    page.get_by_role("button", name="Execute", exact=True).click()
    deadline = time.time() + 60
    while time.time() < deadline and not ds.count_sample_tags():
        time.sleep(0.5)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "7-tagged.png"), full_page=True)


def test_detect_deepfakes_from_the_app(app_dataset, tiny_checkpoint, tmp_path):
    ds = app_dataset
    port = _free_port()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    session = fo.launch_app(ds, remote=True, address="127.0.0.1", port=port, auto=False)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                url = f"http://127.0.0.1:{port}/datasets/{ds.name}"
                _run_detect_in_app(page, url, ds, tiny_checkpoint, shots)
            except Exception:
                page.screenshot(path=str(shots / "failed.png"), full_page=True)
                raise
            finally:
                browser.close()
    finally:
        session.close()

    assert (shots / "5-scored.png").stat().st_size > 0
    ds.reload()
    paths, probs, errors = ds.values(["filepath", "fake_prob", "deepfake_error"])
    ref = DeepfakeScorer(tiny_checkpoint).score_images(paths)
    assert probs == ref["fake_prob"]
    assert errors == ref["deepfake_error"]
    assert sum(e is not None for e in errors) == 1
    tags = dict(zip(paths, ds.values("tags"), strict=True))
    for path, p in zip(paths, probs, strict=True):
        want = ["deepfake_unscored"] if p is None else ["synthetic"] if p >= 0.5 else []
        assert tags[path] == want, (path, p)
