"""End to end: the FiftyOne App on loopback, driven in headless Chromium (Debian's `chromium`
through Playwright), runs the plugin's operators from the operator browser: the scoring form
leads with its summary and says what is wrong with a model in the App's words, the scores land
on the samples (Fake and Real in distinct colours), the apply form says exactly what will
happen and its result lists only what it did, tiles then show the decision, and a model that
cannot load ends the run with its reason on screen. A screenshot of each step is saved (the
folder is printed; set CURATE_SCREENSHOTS to keep them)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fo_app import NEEDS_CHROMIUM, app_page, click_execute, open_operator, screenshot_folder

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]

fo = pytest.importorskip("fiftyone")
pytest.importorskip("playwright.sync_api")

from curate import DeepfakeScorer  # noqa: E402
from curate.filtering import OUTCOMES, DecisionRule  # noqa: E402
from curate.integrations import fiftyone as cfo  # noqa: E402
from curate.integrations.fiftyone.wording import OUTCOME_NAMES, count  # noqa: E402

DEFAULT_HUB_MODEL = "prithivMLmods/open-deepfake-detection"
DETECT_LABEL = "Detect deepfakes"
APPLY_LABEL = "Apply deepfake threshold"


@pytest.fixture
def app_dataset(photo_paths, broken_images, monkeypatch, tmp_path):
    # The App server is a subprocess: it inherits this environment. No CURATE_MODEL, so the
    # form opens on the Hub default, which cannot load offline (HF_HUB_OFFLINE=1).
    monkeypatch.delenv("CURATE_MODEL", raising=False)
    ds = fo.Dataset(f"curate-e2e-{tmp_path.name}-{time.time_ns()}", persistent=True)
    ds.add_samples([fo.Sample(filepath=p) for p in photo_paths + [broken_images["truncated"]]])
    yield ds
    ds.delete()


def _set_model(page, model: str) -> None:
    """Replace the form's default model; wait until the form accepts it."""
    page.locator(f'input[value="{DEFAULT_HUB_MODEL}"]').fill(model)
    page.get_by_text("Hugging Face cache").first.wait_for(state="detached", timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('button')].some("
        "b => b.textContent.trim() === 'Execute' && !b.disabled)",
        timeout=60_000,
    )


def _above(page, first: str, second: str) -> bool:
    """Whether the text `first` is drawn above the text `second` in the open form."""
    a = page.get_by_text(first, exact=False).first.bounding_box()
    b = page.get_by_text(second, exact=True).first.bounding_box()
    return a["y"] < b["y"]


def test_detect_and_apply_from_the_app(app_dataset, tiny_checkpoint, tmp_path):
    ds = app_dataset
    shots = screenshot_folder(tmp_path, "operators")
    n = len(ds)
    with app_page(fo, ds, shots) as (page, _):
        page.keyboard.press("`")
        page.keyboard.type(DETECT_LABEL)
        choice = page.get_by_text("detect_deepfakes", exact=True)
        choice.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "1-operator-browser.png"))
        choice.click()

        # The summary leads the form; the model check speaks of the server and the form.
        summary = f"{n} of {n} samples will be scored"
        page.get_by_text(summary, exact=True).wait_for(timeout=60_000)
        error = page.get_by_text("is not in the server's Hugging Face cache", exact=False).first
        error.wait_for(timeout=60_000)
        assert "--model" not in error.inner_text() and "CURATE_MODEL" not in error.inner_text()
        assert _above(page, summary, "Model")
        execute = page.get_by_role("button", name="Execute", exact=True)
        assert execute.is_disabled()
        page.screenshot(path=str(shots / "2-form-invalid-model.png"))

        _set_model(page, tiny_checkpoint)
        page.screenshot(path=str(shots / "3-form-ready.png"))
        execute.click()
        # The detector loads inside the run: no progress box (and no Done) before the
        # first chunk's report, which says it all.
        page.get_by_text(f"Scored {n} of {n} samples (1 unreadable)", exact=False).wait_for(
            timeout=120_000
        )
        page.get_by_text("fake_prob", exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "4-progress-done.png"))
        page.get_by_role("button", name="Done", exact=True).click()
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots / "5-scored-fake-and-real-colours.png"))

        # Apply: the form says exactly what will happen, first; with a band, so does the
        # threshold's description.
        open_operator(page, APPLY_LABEL, "apply_deepfake_threshold")
        preview = page.get_by_text(f"Of {n} samples:", exact=False).first
        preview.wait_for(timeout=60_000)
        assert _above(page, f"Of {n} samples:", "Threshold")
        page.get_by_text("fake_prob ≥ 0.5: synthetic (tagged 'synthetic')", exact=False).wait_for()
        page.get_by_text("Review band", exact=True).click()
        page.get_by_text("the band (0.3 to 0.7) decides and this number changes no outcome",
                         exact=False).wait_for(timeout=30_000)  # fmt: skip
        page.get_by_text("0.3 ≤ fake_prob < 0.7: to review (tagged 'deepfake_review')",
                         exact=False).first.wait_for()  # fmt: skip
        page.screenshot(path=str(shots / "6-apply-form-review-band.png"))
        click_execute(page)
        counts = cfo.count_decisions(ds, DecisionRule(0.5, review_band=(0.3, 0.7)))
        outcomes = ", ".join(f"{count(counts[o])} {OUTCOME_NAMES[o]}" for o in OUTCOMES)
        page.get_by_text(outcomes, exact=True).wait_for(timeout=60_000)
        body = page.locator("body").inner_text()
        assert "No value provided" not in body and "Saved view" not in body
        assert " 1 samples" not in body
        page.screenshot(path=str(shots / "7-apply-done.png"))
        page.get_by_role("button", name="Close", exact=True).first.click()
        page.wait_for_timeout(2500)
        page.screenshot(path=str(shots / "8-tiles-show-the-decision.png"))

    ds.reload()
    paths, probs, errors = ds.values(["filepath", "fake_prob", "deepfake_error"])
    ref = DeepfakeScorer(tiny_checkpoint).score_images(paths)
    assert probs == ref["fake_prob"]
    assert errors == ref["deepfake_error"]
    rule = cfo.last_decision(ds).rule
    assert rule.review_band == (0.3, 0.7)
    want = {"keep": [], "remove": ["synthetic"], "review": ["deepfake_review"],
            "unscored": ["deepfake_unscored"]}  # fmt: skip
    outcomes = rule.decide_many(probs)
    assert ds.values("tags") == [want[o] for o in outcomes]
    assert ds.values("deepfake_decision.label") == list(outcomes)
    scheme = ds.app_config.color_scheme
    colors = {f["path"]: {v["value"]: v["color"] for v in f["valueColors"]} for f in scheme.fields}
    assert colors["deepfake"] == cfo.LABEL_COLORS
    assert colors["deepfake_decision"] == cfo.DECISION_COLORS


def test_model_that_fails_to_load_shows_its_reason_in_the_app(app_dataset, tiny_checkpoint,
                                                             tmp_path):  # fmt: skip
    """A weights file that is not one passes the form (configs, labels and a weights file
    are there) and fails to load: the run ends with the reason in the progress box and a
    notification, not only inside a collapsed traceback, and nothing is written."""
    ds = app_dataset
    shots = screenshot_folder(tmp_path, "model-error")
    broken = tmp_path / "corrupt-weights"
    broken.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(Path(tiny_checkpoint) / name, broken / name)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    assert cfo.model_problem(str(broken)) is None  # the form lets it through

    with app_page(fo, ds, shots) as (page, _):
        open_operator(page, DETECT_LABEL, "detect_deepfakes")
        _set_model(page, str(broken))
        page.get_by_role("button", name="Execute", exact=True).click()
        reason = page.get_by_text(f"Could not start scoring with {broken}: ", exact=False).first
        reason.wait_for(timeout=90_000)
        assert "deserializing header" in reason.inner_text()  # safetensors' own reason
        page.screenshot(path=str(shots / "1-model-load-error.png"))

    assert ds.exists("fake_prob").count() == 0
