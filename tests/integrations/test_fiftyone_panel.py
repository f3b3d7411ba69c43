"""The Deepfake review panel, opened from the grid's panel menu of the real FiftyOne App and
driven in headless Chromium: the histogram is drawn (a click on a bar moves the threshold
there), the threshold slider and the review band
move the counts (which equal `count_decisions` under the same `DecisionRule`), each group shows
in the grid (review borderline first), the Tag button opens the apply operator with the
panel's settings and runs it, the metrics are `curate eval`'s, an ensemble's members are shown,
and Export writes what the applied decision keeps. A screenshot of each step is saved (the
folder is printed; set CURATE_SCREENSHOTS to keep them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SPREAD
from fo_app import (
    NEEDS_CHROMIUM,
    app_page,
    click_execute,
    open_panel,
    screenshot_folder,
    wait_until,
)

pytestmark = [pytest.mark.slow, NEEDS_CHROMIUM]

fo = pytest.importorskip("fiftyone")
pytest.importorskip("playwright.sync_api")

from curate import DeepfakeScorer  # noqa: E402
from curate.evaluation import compute_metrics, encode_labels  # noqa: E402
from curate.filtering import OUTCOMES, REVIEW, DecisionRule  # noqa: E402
from curate.integrations import fiftyone as cfo  # noqa: E402
from curate.integrations.fiftyone.wording import OUTCOME_NAMES, count  # noqa: E402
from curate.testing import build_random_checkpoint  # noqa: E402


def crops(photo_paths: list[str], folder: Path) -> dict[str, str]:
    """Nine overlapping crops of each example photo, as JPEG files: real image content whose
    scores spread. -> {path: the photo it came from}."""
    from PIL import Image

    folder.mkdir()
    out = {}
    for photo in photo_paths:
        img = Image.open(photo).convert("RGB")
        w, h = img.size
        for i in range(3):
            for j in range(3):
                box = (i * w // 4, j * h // 4, i * w // 4 + w // 2, j * h // 4 + h // 2)
                path = folder / f"{Path(photo).stem}-{i}{j}.jpg"
                img.crop(box).save(path, quality=90)
                out[str(path)] = photo
    return out


@pytest.fixture
def review_dataset(photo_paths, broken_images, tiny_checkpoint, tmp_path):
    """Real images (one unreadable) scored by a two-detector ensemble, with ground truth."""
    second = build_random_checkpoint(tmp_path / "second", classifier_scale=2 * SPREAD, seed=1)
    sources = crops(photo_paths, tmp_path / "crops")
    files = [*sources, broken_images["truncated"]]
    # Ground truth a curator might have: crops of two of the photos are "Fake".
    fake = set(sorted(photo_paths)[:2])
    ds = fo.Dataset(f"curate-panel-{tmp_path.name}", persistent=True, overwrite=True)
    ds.add_samples(
        [fo.Sample(filepath=f, ground_truth=fo.Classification(
            label="Fake" if sources.get(f) in fake else "Real")) for f in files]
    )  # fmt: skip
    scorer = DeepfakeScorer([tiny_checkpoint, second], device="cpu", dtype="float32")
    cfo.score_samples(ds, scorer)
    yield ds, [tiny_checkpoint, second]
    ds.delete()


def counts_text(counts: dict[str, int]) -> str:
    return " · ".join(f"{counts[o]:,} {OUTCOME_NAMES[o]}" for o in OUTCOMES)


def wait_for_counts(page, ds, rule: DecisionRule) -> dict[str, int]:
    """The panel's counts line shows `count_decisions` under `rule`."""
    counts = cfo.count_decisions(ds, rule)
    page.get_by_text(counts_text(counts), exact=True).wait_for(timeout=60_000)
    return counts


def slider(page, label: str):
    """The panel's slider labelled `label` (the App has sliders of its own: grid zoom...)."""
    return (
        page.get_by_text(label, exact=True)
        .locator(
            "xpath=ancestor::*[.//*[contains(@class, 'MuiSlider-root')]][1]"
            "//*[contains(@class, 'MuiSlider-root')]"
        )
        .first
    )


def slider_value(page, label: str) -> float:
    return float(slider(page, label).locator('input[type="range"]').get_attribute("aria-valuenow"))


def drag_slider(page, label: str, value: float) -> float:
    """Click a [0, 1] slider's rail at `value` (MUI moves the thumb there and commits); the
    value it took."""
    box = slider(page, label).bounding_box()
    page.mouse.click(box["x"] + value * box["width"], box["y"] + box["height"] / 2)
    wait_until(lambda: abs(slider_value(page, label) - value) < 0.03, 30, f"{label} at {value}")
    page.wait_for_timeout(500)  # the panel's own update of the other sliders
    return slider_value(page, label)


def cell(page, row: str) -> str:
    """The value beside `row` in a table the panel shows."""
    tr = page.locator("tr").filter(has=page.get_by_role("cell", name=row, exact=True)).first
    tr.wait_for(timeout=60_000)
    return tr.locator("td").nth(1).inner_text().strip()


def test_review_panel_in_the_app(review_dataset, tmp_path):
    ds, members = review_dataset
    shots = screenshot_folder(tmp_path, "review-panel")
    scored = sorted(p for p in ds.values("fake_prob") if p is not None)
    assert len(scored) == len(ds) - 1

    def quantile(q: float) -> float:
        return round(scored[int(q * (len(scored) - 1))], 2)

    with app_page(fo, ds, shots, viewport=(1600, 1000)) as (page, session):
        open_panel(page, "deepfake_review")
        rule = DecisionRule()
        wait_for_counts(page, ds, rule)
        # the histogram: one bar trace over the scores, and the threshold line on it
        plot = page.locator(".js-plotly-plot").first
        plot.wait_for(timeout=30_000)
        assert plot.locator(".bars .point path").count() > 0
        assert plot.locator(".shapelayer path").count() >= 1
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "1-panel.png"))

        # a click on a bar puts the threshold at the bar's left edge
        hist = cfo.score_histogram(ds)
        top = max(k for k, n in enumerate(hist.counts) if n)
        box = plot.locator(".bars .point path").nth(top).bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        wait_until(lambda: slider_value(page, "Threshold") == hist.lefts[top], 30, "a bar click")
        wait_for_counts(page, ds, DecisionRule(hist.lefts[top]))

        # the threshold slider moves the counts
        t = drag_slider(page, "Threshold", quantile(0.5))
        rule = DecisionRule(t)
        wait_for_counts(page, ds, rule)
        page.get_by_text(f"fake_prob ≥ {t:g}: synthetic", exact=True).wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "2-threshold-moved.png"))

        # a review band: the band sliders appear around the threshold, the counts follow
        page.get_by_text("Review band", exact=True).click()
        page.get_by_text("Remove from", exact=True).wait_for(timeout=30_000)
        wait_for_counts(page, ds, DecisionRule(t, review_band=(min(0.3, t), max(0.7, t))))
        lo = drag_slider(page, "Review from", quantile(0.45))
        hi = drag_slider(page, "Remove from", quantile(0.8))
        assert slider_value(page, "Threshold") == t  # inside the band: left where it was
        band = (lo, hi)
        rule = DecisionRule(t, review_band=band)
        counts = wait_for_counts(page, ds, rule)
        assert counts[REVIEW] > 0 and counts["keep"] > 0
        assert plot.locator(".shapelayer path").count() >= 2  # the band is drawn too
        page.screenshot(path=str(shots / "3-review-band.png"))

        # the review group in the grid, closest to the threshold first
        page.get_by_role("button", name=f"Show to review ({counts[REVIEW]})").click()
        page.get_by_text(f"{counts[REVIEW]} samples", exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("The grid shows the to review samples", exact=False).wait_for()
        want = cfo.outcome_view(ds, rule, REVIEW)
        order = want.values("fake_prob")
        assert order == sorted(order, key=lambda p: abs(p - rule.threshold))
        wait_until(lambda: session.view is not None and len(session.view) == counts[REVIEW],
                   30, "the App's view to be the review group")  # fmt: skip
        assert session.view.values("id") == want.values("id")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "4-review-group.png"))
        page.get_by_role("button", name="Show all", exact=True).click()
        wait_until(lambda: session.view is None or len(session.view) == len(ds), 30, "all")

        # Tag…: the apply operator's form, filled with the panel's settings, then run
        page.get_by_role("button", name="Tag…", exact=True).click()
        page.get_by_text("Apply deepfake threshold", exact=True).first.wait_for(timeout=30_000)
        steps = page.get_by_text(f"{lo:g} ≤ fake_prob < {hi:g}: to review", exact=False)
        steps.first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "5-tag-form.png"))
        click_execute(page)
        wait_until(lambda: ds.reload() or bool(ds.count_sample_tags()), 60, "tags")
        outcomes = ", ".join(f"{count(counts[o])} {OUTCOME_NAMES[o]}" for o in OUTCOMES)
        page.get_by_text(outcomes, exact=True).wait_for(timeout=60_000)
        page.get_by_text("these settings are the decision applied on", exact=False).wait_for()
        page.screenshot(path=str(shots / "6-tag-done.png"))
        page.get_by_role("button", name="Close", exact=True).first.click()
        probs, tags, decisions = ds.values(["fake_prob", "tags",
                                                 "deepfake_decision.label"])  # fmt: skip
        want_tags = {"remove": ["synthetic"], "review": ["deepfake_review"],
                     "unscored": ["deepfake_unscored"], "keep": []}  # fmt: skip
        outcomes = rule.decide_many(probs)
        assert [sorted(t) for t in tags] == [want_tags[o] for o in outcomes]
        assert decisions == list(outcomes)
        assert cfo.last_decision(ds).rule == rule
        page.wait_for_timeout(2500)
        page.screenshot(path=str(shots / "7-tiles-show-the-decision.png"))

        # metrics against the ground truth field: the numbers of curate eval
        page.get_by_text("(none)", exact=True).click()
        page.get_by_role("option", name="ground_truth.label").click()
        y, labelled = encode_labels(ds.values("ground_truth.label"))
        p = np.array([np.nan if v is None else v for v in probs])
        use = labelled & ~np.isnan(p)
        m = compute_metrics(y[use], p[use], rule.threshold)
        assert cell(page, "accuracy") == f"{m.accuracy:.3f}"
        assert cell(page, "ROC-AUC") == f"{m.roc_auc:.3f}"
        assert cell(page, "Fake recall") == f"{m.fake_recall:.3f}"
        # the ensemble's members, with their mean scores
        member_probs = np.array(
            [v for v in ds.values("member_fake_probs") if v is not None], dtype=float
        )
        for j, model in enumerate(members):
            assert cell(page, model) == f"{member_probs[:, j].mean():.3f}"
        page.get_by_text("Ensemble members", exact=False).scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "8-metrics-and-members.png"))

        # Export…: follows the decision just applied, streams its progress
        out = tmp_path / "kept.parquet"
        page.get_by_role("button", name="Export…", exact=True).click()
        page.get_by_text("Following the decision applied on", exact=False).wait_for()
        field = page.get_by_text("Parquet file", exact=True).locator(
            "xpath=ancestor::*[.//input][1]//input"
        )
        field.first.fill(str(out))
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "9-export-form.png"))
        click_execute(page)
        n_kept = cfo.count_decisions(ds, rule)["keep"]
        page.get_by_text(f"Exported {count(n_kept, 'row')} to {out}", exact=False).wait_for(
            timeout=60_000
        )
        page.screenshot(path=str(shots / "10-exported.png"))

    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.num_rows == n_kept
    assert set(table.column("decision").to_pylist()) == {"keep"}
    assert pq.read_schema(out).metadata[b"curate.review_band"] == f"[{lo}, {hi}]".encode()
    assert sorted(p.name for p in Path(shots).iterdir()) != []
