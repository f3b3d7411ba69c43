"""End to end: the FiftyOne App on loopback, driven in headless Chromium (Debian's `chromium`
through Playwright), runs the plugin's operators from the operator browser; the scores land on
the samples, and a model that cannot load ends the run with its error shown in the App. A
screenshot of each step is saved under the test's temp dir (`screenshots/`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
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
from curate.integrations import fiftyone as cfo  # noqa: E402

DEFAULT_HUB_MODEL = "prithivMLmods/open-deepfake-detection"
DETECT_LABEL = "Detect deepfakes"
APPLY_LABEL = "Apply deepfake threshold"


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


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


@contextlib.contextmanager
def app_page(ds, shots: Path) -> Iterator:
    """The App on `ds` in a fresh headless Chromium page; `failed.png` when the body raises."""
    port = _free_port()
    session = fo.launch_app(ds, remote=True, address="127.0.0.1", port=port, auto=False)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(f"http://127.0.0.1:{port}/datasets/{ds.name}", timeout=60_000)
                # the grid's first thumbnail is in the page (its checkbox stays hidden until
                # hovered)
                page.locator('[data-cy="looker-checkbox-input-"]').first.wait_for(
                    state="attached", timeout=90_000
                )
                page.wait_for_timeout(1500)  # let the grid settle before the hotkey
                yield page
            except Exception:
                page.screenshot(path=str(shots / "failed.png"), full_page=True)
                raise
            finally:
                browser.close()
    finally:
        session.close()


def _open_operator(page, label: str, uri_name: str) -> None:
    """Operator browser: backtick, search by the operator's label, pick it by its name."""
    page.keyboard.press("`")
    page.keyboard.type(label)
    choice = page.get_by_text(uri_name, exact=True)
    choice.wait_for(timeout=30_000)
    choice.click()


def _set_model(page, model: str) -> None:
    """Replace the form's default model; wait until the form accepts it."""
    page.locator(f'input[value="{DEFAULT_HUB_MODEL}"]').fill(model)
    page.get_by_text("Could not load model").first.wait_for(state="detached", timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('button')].some("
        "b => b.textContent.trim() === 'Execute' && !b.disabled)",
        timeout=60_000,
    )


def _run_detect_in_app(page, ds, model: str, shots: Path) -> None:
    page.keyboard.press("`")
    page.keyboard.type(DETECT_LABEL)
    choice = page.get_by_text("detect_deepfakes", exact=True)
    choice.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "1-operator-browser.png"))
    choice.click()

    # The form validates the model in place: the Hub default cannot load offline.
    page.get_by_text("Could not load model").first.wait_for(timeout=60_000)
    execute = page.get_by_role("button", name="Execute", exact=True)
    assert execute.is_disabled()
    page.screenshot(path=str(shots / "2-form-invalid-model.png"))

    _set_model(page, model)
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
    _open_operator(page, APPLY_LABEL, "apply_deepfake_threshold")
    page.get_by_text("kept,", exact=False).first.wait_for(timeout=60_000)  # outcome preview
    page.screenshot(path=str(shots / "6-apply-form.png"))
    page.get_by_role("button", name="Execute", exact=True).click()
    deadline = time.time() + 60
    while time.time() < deadline and not ds.count_sample_tags():
        time.sleep(0.5)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "7-tagged.png"), full_page=True)


def test_detect_deepfakes_from_the_app(app_dataset, tiny_checkpoint, shots):
    ds = app_dataset
    with app_page(ds, shots) as page:
        _run_detect_in_app(page, ds, tiny_checkpoint, shots)

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


def test_model_that_fails_to_load_shows_its_error_in_the_app(
    app_dataset, tiny_checkpoint, shots, tmp_path
):
    """Configs but no weights: the form's check (configs only) passes, loading fails. The run
    must end with the loading error on screen, not a progress box stuck at 0 %."""
    ds = app_dataset
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(Path(tiny_checkpoint) / name, no_weights / name)
    assert cfo.model_problem(str(no_weights)) is None  # the form lets it through

    with app_page(ds, shots) as page:
        _open_operator(page, DETECT_LABEL, "detect_deepfakes")
        _set_model(page, str(no_weights))
        page.get_by_role("button", name="Execute", exact=True).click()
        # FiftyOne's error panel for a failed operation; its details (collapsed) hold the
        # error raised, ending with our message.
        summary = page.get_by_text("Error occurred during operator execution").first
        summary.wait_for(timeout=90_000)
        page.screenshot(path=str(shots / "1-model-load-error.png"))
        summary.click()
        error = page.get_by_text("Could not load a detector from the directory").first
        error.wait_for(timeout=10_000)
        assert str(no_weights) in error.inner_text()
        page.screenshot(path=str(shots / "2-model-load-error-details.png"))
        assert page.get_by_role("button", name="Close", exact=True).is_visible()  # run over

    assert (shots / "2-model-load-error-details.png").stat().st_size > 0
    assert ds.exists("fake_prob").count() == 0
