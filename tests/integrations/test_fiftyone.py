"""The FiftyOne adapter and plugin against a real FiftyOne with its real database.

Every operator runs through `fiftyone.operators.execute_operator`, immediately and delegated
(queued, then run the way `fiftyone delegated launch` runs it), on real image files, broken
ones included; the values written must equal `DeepfakeScorer`'s for the same files.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PLUGINS = str(REPO / "plugins")

fo = pytest.importorskip("fiftyone")
foo = pytest.importorskip("fiftyone.operators")

from fiftyone.operators.delegated import DelegatedOperationService  # noqa: E402
from fiftyone.operators.executor import ExecutionContext, ExecutionError, Executor  # noqa: E402

from curate import DeepfakeScorer  # noqa: E402
from curate.filtering import OUTCOMES, DecisionRule  # noqa: E402
from curate.integrations import fiftyone as cfo  # noqa: E402
from curate.schema import label_for  # noqa: E402

DETECT = "@curate/deepfakes/detect_deepfakes"
ACT = "@curate/deepfakes/apply_deepfake_threshold"
EXPORT = "@curate/deepfakes/export_parquet"
PATH_BROKEN = ("truncated", "zero_bytes", "not_an_image", "missing_file", "bomb")


@pytest.fixture(scope="session", autouse=True)
def _plugins_dir():
    if fo.config.plugins_dir != PLUGINS:
        fo.config.plugins_dir = PLUGINS


@pytest.fixture
def image_paths(photo_paths, mode_images, broken_images) -> list[str]:
    good = list(photo_paths) + [mode_images[k] for k in ("rgba_png", "cmyk_jpeg", "i16_png")]
    return good + [broken_images[k] for k in PATH_BROKEN]


@pytest.fixture
def dataset(image_paths):
    ds = fo.Dataset()
    ds.add_samples([fo.Sample(filepath=p) for p in image_paths])
    yield ds
    if fo.dataset_exists(ds.name):
        ds.delete()


@pytest.fixture(scope="session")
def reference(tiny_checkpoint):
    """What the scorer itself gives, path by path (logits included)."""
    scorer = DeepfakeScorer(tiny_checkpoint, with_logits=True)
    cache: dict[str, dict] = {}

    def get(paths: list[str]) -> list[dict]:
        missing = [p for p in paths if p not in cache]
        if missing:
            out = scorer.score_images(missing)
            for i, p in enumerate(missing):
                cache[p] = {c: out[c][i] for c in out}
        return [cache[p] for p in paths]

    return get


def assert_matches_scorer(samples, reference, logits: bool = False) -> None:
    paths, probs, labels, errors = samples.values(
        ["filepath", "fake_prob", "deepfake", "deepfake_error"]
    )
    for path, p, label, err, ref in zip(
        paths, probs, labels, errors, reference(paths), strict=True
    ):
        assert err == ref["deepfake_error"], path
        if ref["fake_prob"] is None:
            assert p is None and label is None, path
            assert err, path
            continue
        assert p == ref["fake_prob"], path  # the very float the scorer returned
        assert label.label == ref["deepfake_label"] == label_for(p)  # Fake iff p >= 0.5
        want = ref["fake_prob"] if label.label == "Fake" else ref["real_prob"]
        assert label.confidence == want
        if logits:
            assert list(label.logits) == pytest.approx([ref["fake_logit"], ref["real_logit"]])


def test_plugin_is_listed_by_fiftyone():
    uris = {op.uri for op in foo.list_operators()}
    assert {DETECT, ACT, EXPORT} <= uris
    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=PLUGINS)
    out = subprocess.run(
        [str(Path(sys.executable).with_name("fiftyone")), "operators", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert DETECT in out.stdout, out.stderr[-2000:]


def test_detect_immediate_matches_scorer(dataset, tiny_checkpoint, reference):
    result = foo.execute_operator(
        DETECT,
        {
            "dataset": dataset,
            "params": {"model": tiny_checkpoint, "batch_size": 3, "store_logits": True},
        },
    )
    assert result.error is None
    assert_matches_scorer(dataset, reference, logits=True)
    errors = [e for e in dataset.values("deepfake_error") if e]
    assert len(errors) == len(PATH_BROKEN)
    assert dataset.get_field("fake_prob").__class__ is fo.FloatField
    settings = cfo.scoring_settings(dataset)
    assert settings["curate.model"] == tiny_checkpoint


def test_score_samples_with_auto_batch_size(dataset, tiny_checkpoint, reference):
    summary = cfo.score_samples(dataset, DeepfakeScorer(tiny_checkpoint, batch_size="auto"))
    assert summary.scored + summary.failed == len(dataset)
    assert_matches_scorer(dataset, reference)


def test_detect_via_operator_call_and_selected_samples(dataset, tiny_checkpoint, reference):
    detect = foo.get_operator(DETECT)
    view = dataset.limit(4)
    detect(view, model=tiny_checkpoint, batch_size=2)
    assert dataset.exists("fake_prob").count() == 4
    assert_matches_scorer(view, reference)
    # The App's "selected samples" target
    ids = dataset.skip(5).limit(2).values("id")
    foo.execute_operator(
        DETECT,
        {
            "dataset": dataset,
            "selected": ids,
            "params": {"model": tiny_checkpoint, "view_target": "SELECTED_SAMPLES"},
        },
    )
    assert set(dataset.exists("fake_prob").values("id")) == set(view.values("id")) | set(ids)


def test_detect_delegated(dataset, tiny_checkpoint, reference):
    queued = foo.execute_operator(
        DETECT,
        {"dataset": dataset, "params": {"model": tiny_checkpoint, "batch_size": 4}},
        request_delegation=True,
    )
    assert queued.delegated
    assert dataset.exists("fake_prob").count() == 0  # nothing ran yet
    service = DelegatedOperationService()
    results = service.execute_queued_operations(operator=DETECT, dataset_name=dataset.name)
    assert len(results) == 1 and results[0].error is None, results[0].error
    doc = service.get(queued.result["id"])
    assert doc.run_state == "completed"
    assert doc.status.progress == 1.0  # progress reported through ctx.set_progress
    assert_matches_scorer(dataset, reference)


def test_detect_delegated_in_a_monitored_worker_process(dataset, tiny_checkpoint, reference):
    """`fiftyone delegated launch --monitor` runs each operation in a spawned process."""
    foo.get_operator(DETECT)(dataset, model=tiny_checkpoint, delegate=True)
    service = DelegatedOperationService()
    (result,) = service.execute_queued_operations(
        operator=DETECT,
        dataset_name=dataset.name,
        limit=1,
        log=True,
        monitor=True,
        check_interval_seconds=1,
    )
    assert result.error is None, result.error
    dataset.reload()  # another process wrote the fields
    assert_matches_scorer(dataset, reference)


class CountingScorer(DeepfakeScorer):
    """The real scorer, counting what it is asked to score; can fail on the n-th call."""

    def __init__(self, *args, fail_on_call: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.scored: Counter = Counter()
        self.calls = 0
        self.fail_on_call = fail_on_call

    def score_images(self, images):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt
        images = list(images)
        self.scored.update(images)
        return super().score_images(images)


def test_interrupted_then_resumed_writes_each_sample_once(dataset, tiny_checkpoint, reference):
    first = CountingScorer(tiny_checkpoint, fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        cfo.score_samples(dataset, first, chunk_size=3)
    done = dataset.exists("fake_prob").values("id")
    assert len(done) == 6  # the two chunks scored before the interrupt were kept
    stamps = dict(zip(*dataset.values(["id", "last_modified_at"]), strict=True))

    second = CountingScorer(tiny_checkpoint)
    events = []
    summary = cfo.score_samples(
        dataset, second, chunk_size=3, skip_existing=True, progress=events.append
    )
    assert summary.skipped == 6 and summary.scored + summary.failed == len(dataset) - 6
    assert summary.failed == len(PATH_BROKEN)
    assert [e.done for e in events] == list(range(3, len(dataset) - 6, 3)) + [len(dataset) - 6]
    assert events[-1].fraction == 1.0
    total = first.scored + second.scored
    assert sorted(total) == sorted(dataset.values("filepath"))
    assert set(total.values()) == {1}  # every sample scored (and written) exactly once
    after = dict(zip(*dataset.values(["id", "last_modified_at"]), strict=True))
    assert all(after[i] == stamps[i] for i in done)  # first run's samples not rewritten
    assert_matches_scorer(dataset, reference)

    # errors count as done; retry_failed re-scores just those
    third = CountingScorer(tiny_checkpoint)
    cfo.score_samples(dataset, third, skip_existing=True)
    assert not third.scored
    cfo.score_samples(dataset, third, skip_existing=True, retry_failed=True)
    assert len(third.scored) == len(PATH_BROKEN)


def _error(fn) -> str:
    with pytest.raises((ExecutionError, ValueError)) as info:
        fn()
    return str(info.value)


def operator_context(uri: str, samples, params: dict, **request) -> ExecutionContext:
    """The context FiftyOne builds for an operator's form, run or output on `samples`."""
    return ExecutionContext(
        request_params={"dataset_name": samples._dataset.name,
                        "view": samples.view()._serialize(), "params": params, **request},
        executor=Executor(),
        operator_uri=uri,
        required_secrets=foo.get_operator(uri)._plugin_secrets,
    )  # fmt: skip


def test_form_validation_gives_clear_messages(dataset, tiny_checkpoint, tmp_path):
    dataset.add_sample_field("taken", fo.StringField)
    ctx = {"dataset": dataset}

    def run(uri, **params):
        return foo.execute_operator(uri, {**ctx, "params": params})

    msg = _error(lambda: run(DETECT, model=tiny_checkpoint, prob_field="taken"))
    assert "'taken' already exists as StringField, not FloatField" in msg
    msg = _error(lambda: run(DETECT, model=str(tmp_path / "nowhere")))
    assert f"There is no folder {tmp_path / 'nowhere'} on the server" in msg
    empty = tmp_path / "empty_model"
    empty.mkdir()
    msg = _error(lambda: run(DETECT, model=str(empty)))
    assert f"The folder {empty} is not a model checkpoint" in msg
    assert "huggingface.co" not in msg
    msg = _error(lambda: run(DETECT, model=tiny_checkpoint, calibration=str(tmp_path / "c.json")))
    assert "cannot read calibration file" in msg
    msg = _error(lambda: run(DETECT, model=tiny_checkpoint, batch_size=0))
    assert "batch" in msg.lower()
    if not torch.cuda.is_available():
        msg = _error(lambda: run(DETECT, model=tiny_checkpoint, device="cuda"))
        assert "CUDA is not available" in msg

    foo.execute_operator(DETECT, {**ctx, "params": {"model": tiny_checkpoint}})
    msg = _error(lambda: run(ACT, threshold=1.5))
    assert "threshold must be a number in [0, 1], got 1.5" in msg
    msg = _error(
        lambda: run(ACT, threshold=0.5, use_review_band=True, review_low=0.6, review_high=0.9)
    )
    assert "must lie inside the review band" in msg
    msg = _error(lambda: run(ACT, threshold=0.5, action="delete"))
    assert "confirm" in msg
    assert len(dataset) == len(dataset.exists("filepath"))  # nothing deleted

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    msg = _error(lambda: run(EXPORT, path=str(a_file / "out.parquet")))
    assert f"{a_file} is not a folder" in msg
    msg = _error(lambda: run(EXPORT, path=str(a_file)))
    assert "already exists" in msg
    msg = _error(lambda: run(EXPORT, path=str(tmp_path)))
    assert "is a directory" in msg
    assert "Traceback" not in msg


@pytest.fixture
def scored_values():
    """Scores that hit every boundary of the rules below, plus unscored forms."""
    return [0.0, 0.1, 0.2999, 0.3, 0.49999, 0.5, 0.69999, 0.7, 0.9, 1.0, None, math.nan, "missing"]


@pytest.fixture
def boundary_dataset(scored_values, photo_paths):
    ds = fo.Dataset()
    ds.add_sample_field("fake_prob", fo.FloatField)
    samples = []
    for v in scored_values:
        s = fo.Sample(filepath=photo_paths[0])
        if v != "missing":
            s["fake_prob"] = v
        samples.append(s)
    ds.add_samples(samples)
    yield ds
    ds.delete()


EVIDENCE = (True, False, None, "missing")  # provenance_synthetic / provenance_strong values


@pytest.fixture(scope="module")
def evidence_dataset(photo_paths):
    """Every boundary score (and every unscored form) crossed with every provenance value."""
    import itertools

    ds = fo.Dataset()
    ds.add_sample_field("fake_prob", fo.FloatField)
    ds.add_sample_field("provenance_synthetic", fo.BooleanField)
    ds.add_sample_field("provenance_strong", fo.BooleanField)
    values = [0.0, 0.1, 0.2999, 0.3, 0.49999, 0.5, 0.69999, 0.7, 0.9, 1.0, None, math.nan]
    samples = []
    for p, synthetic, strong in itertools.product([*values, "missing"], EVIDENCE, EVIDENCE):
        s = fo.Sample(filepath=photo_paths[0])
        for name, v in (("fake_prob", p), ("provenance_synthetic", synthetic),
                        ("provenance_strong", strong)):  # fmt: skip
            if v != "missing":
                s[name] = v
        samples.append(s)
    ds.add_samples(samples)
    yield ds
    ds.delete()


def _every_rule() -> list[DecisionRule]:
    rules = []
    for t in (0.0, 0.3, 0.5, 0.7, 1.0):
        for band in (None, (0.3, 0.7)):
            if band and not band[0] <= t <= band[1]:
                continue
            for unscored in ("keep", "drop", "separate"):
                for strong in (False, True):
                    for conflicts in (False, True):
                        rules.append(DecisionRule(t, band, unscored, strong, conflicts))
    return rules


def test_fiftyone_outcomes_equal_decide_many(evidence_dataset):
    """The MongoDB expressions give every sample the outcome `DecisionRule.decide_many` gives
    it: scores exactly at the threshold and the band edges, null / NaN / missing scores,
    provenance evidence true / false / null / missing, every option of the rule."""
    ds = evidence_dataset
    ids, probs, synthetic, strong = ds.values(
        ["id", "fake_prob", "provenance_synthetic", "provenance_strong"]
    )
    rules = _every_rule()
    assert len(rules) == 96
    seen = set()
    for rule in rules:
        want = dict(zip(ids, rule.decide_many(probs, synthetic, strong), strict=True))
        views = cfo.decision_views(ds, rule)
        got: dict[str, str] = {}
        for outcome, view in views.items():
            for i in view.values("id"):
                assert i not in got, (rule, i, got[i], outcome)  # one outcome per sample
                got[i] = outcome
        assert got == want, rule
        counts = cfo.count_decisions(ds, rule)
        assert counts == {o: sum(v == o for v in want.values()) for o in OUTCOMES}, rule
        # the rows a bare score rule keeps; the scored sample exactly at the threshold is removed
        at = [i for i, p in zip(ids, probs, strict=True) if p == rule.threshold]
        if not rule.review_band and not rule.uses_provenance:
            assert {got[i] for i in at} == {"remove"}, rule
        seen.update(want.values())
    assert seen == set(OUTCOMES)


@pytest.mark.parametrize("delegate", [False, True])
def test_act_operator_tags_saves_and_deletes(boundary_dataset, delegate):
    ds = boundary_dataset
    act = foo.get_operator(ACT)

    def run(**kw):
        result = act(ds, delegate=delegate, **kw)
        if delegate:
            service = DelegatedOperationService()
            (result,) = service.execute_queued_operations(operator=ACT, dataset_name=ds.name)
            assert result.error is None, result.error
        return result

    rule = DecisionRule(0.5, review_band=(0.3, 0.7))
    ids, probs = ds.values(["id", "fake_prob"])
    want = {i: rule.decide(p) for i, p in zip(ids, probs, strict=True)}
    run(threshold=0.5, review_band=(0.3, 0.7))
    tags = dict(zip(*ds.values(["id", "tags"]), strict=True))
    expected_tag = {"remove": ["synthetic"], "review": ["deepfake_review"],
                    "unscored": ["deepfake_unscored"], "keep": []}  # fmt: skip
    assert all(tags[i] == expected_tag[o] for i, o in want.items())

    # a re-run with another rule replaces the old tags instead of adding to them
    run(threshold=0.9, unscored="keep")
    tags = dict(zip(*ds.values(["id", "tags"]), strict=True))
    rule2 = DecisionRule(0.9, unscored="keep")
    for i, p in zip(ids, probs, strict=True):
        assert tags[i] == (["synthetic"] if rule2.decide(p) == "remove" else []), p

    run(threshold=0.5, action="save_view", view_name="clean")
    kept = ds.load_saved_view("clean")
    rule3 = DecisionRule(0.5)
    assert set(kept.values("id")) == {
        i for i, p in zip(ids, probs, strict=True) if rule3.decide(p) == "keep"
    }
    run(threshold=0.5, action="delete", confirm_delete=True)
    assert set(ds.values("id")) == {
        i for i, p in zip(ids, probs, strict=True) if rule3.decide(p) != "remove"
    }


@pytest.mark.parametrize("delegate", [False, True])
def test_export_operator_writes_kept_samples(
    dataset, tiny_checkpoint, reference, tmp_path, delegate
):
    import datasets
    import pyarrow.parquet as pq

    from curate.io.parquet import curate_metadata as read_metadata

    foo.get_operator(DETECT)(dataset, model=tiny_checkpoint)
    dataset.limit(2).tag_samples("checked")
    out = tmp_path / "kept.parquet"
    result = foo.get_operator(EXPORT)(dataset, str(out), threshold=0.5, delegate=delegate)
    if delegate:
        assert not out.exists()
        (result,) = DelegatedOperationService().execute_queued_operations(
            operator=EXPORT, dataset_name=dataset.name
        )
    assert result.error is None, result.error
    F = fo.ViewField
    # MongoDB orders null below every number: a bare F("fake_prob") < 0.5 also matches the
    # unreadable images, which the rule sets apart.
    assert len(dataset.match(F("fake_prob") < 0.5)) == len(dataset.exists("fake_prob", False)) + (
        len(dataset.match(F("fake_prob").exists() & (F("fake_prob") < 0.5)))
    )
    kept = dataset.match(F("fake_prob").exists() & (F("fake_prob") < 0.5))
    table = pq.read_table(out)
    assert table.num_rows == len(kept) > 0
    assert table.column("sample_id").to_pylist() == kept.values("id")
    refs = reference(kept.values("filepath"))
    assert table.column("fake_prob").to_pylist() == pytest.approx([r["fake_prob"] for r in refs])
    assert table.column("deepfake_label").to_pylist() == [r["deepfake_label"] for r in refs]
    images = table.column("image").to_pylist()
    assert [im["bytes"] for im in images] == [Path(p).read_bytes() for p in kept.values("filepath")]
    meta = read_metadata(out)
    assert meta["curate.model"] == tiny_checkpoint and meta["curate.threshold"] == "0.5"
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds[0]["image"].size


def test_export_everything_with_extra_fields(dataset, tiny_checkpoint, tmp_path):
    import pyarrow.parquet as pq

    cfo.score_samples(dataset, DeepfakeScorer(tiny_checkpoint))
    out = tmp_path / "all.parquet"
    n = cfo.export_parquet(dataset, out, fields=["deepfake"])
    table = pq.read_table(out)
    assert n == table.num_rows == len(dataset)
    errors = table.column("deepfake_error").to_pylist()
    assert sum(e is not None for e in errors) == len(PATH_BROKEN)
    assert "decision" not in table.column_names
    with pytest.raises(FileExistsError):
        cfo.export_parquet(dataset, out)


def test_example_script_runs(tiny_checkpoint, image_folder, broken_images, tmp_path):
    (image_folder / "broken.jpg").write_bytes(Path(broken_images["truncated"]).read_bytes())
    out = tmp_path / "kept.parquet"
    env = dict(
        os.environ,
        CURATE_MODEL=tiny_checkpoint,
        FIFTYONE_DATABASE_DIR=fo.config.database_dir,
        FIFTYONE_PLUGINS_DIR=PLUGINS,
    )
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "fiftyone_example.py"),
            str(image_folder),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "1 unreadable" in run.stdout
    import pyarrow.parquet as pq

    rows = pq.read_table(out).num_rows
    assert f"wrote {rows} rows" in run.stdout and rows > 0


def test_detect_with_calibration_file(dataset, tiny_checkpoint, tmp_path):
    from curate.calibration import Calibration

    path = tmp_path / "calibration.json"
    Calibration.temperature(2.5, model=tiny_checkpoint).save(path)
    view = dataset.limit(4)
    foo.get_operator(DETECT)(view, model=tiny_checkpoint, calibration=str(path))
    paths, probs = view.values(["filepath", "fake_prob"])
    assert (
        probs
        == DeepfakeScorer(tiny_checkpoint, calibration=str(path)).score_images(paths)["fake_prob"]
    )
    assert probs != DeepfakeScorer(tiny_checkpoint).score_images(paths)["fake_prob"]
    assert '"slope": 0.4' in cfo.scoring_settings(dataset)["curate.calibration"]


def test_non_image_target_is_refused_in_the_form(tiny_checkpoint):
    ds = fo.Dataset()
    ds.add_sample(fo.Sample(filepath="/tmp/clip.mp4"))
    try:
        msg = _error(
            lambda: foo.execute_operator(
                DETECT, {"dataset": ds, "params": {"model": tiny_checkpoint}}
            )
        )
        assert "Only images can be scored; this target holds video" in msg
    finally:
        ds.delete()


def test_detect_form_previews_work_and_warns_about_another_model(
    dataset, tiny_checkpoint, swapped_checkpoint
):
    foo.get_operator(DETECT)(dataset.limit(3), model=tiny_checkpoint)

    def notices(**params) -> dict:
        ctx = operator_context(DETECT, dataset, params)
        form = foo.get_operator(DETECT).resolve_input(ctx)
        props = form.type.properties
        return {k: props[k].view.label for k in ("summary", "other_model") if k in props}

    n = len(dataset)
    assert notices(model=tiny_checkpoint) == {"summary": f"{n} of {n} samples will be scored"}
    got = notices(model=swapped_checkpoint, skip_existing=True)
    assert got["summary"] == f"{n - 3} of {n} samples will be scored"
    assert (
        got["other_model"]
        == f"'fake_prob' holds scores from {tiny_checkpoint}; existing ones are kept"
    )


def test_plugin_installs_with_fiftyone_plugins_download(tmp_path):
    """The README's install command, against an archive of the repository served on loopback
    (GitHub cannot be reached here; `fiftyone plugins download` treats both the same way)."""
    import functools
    import http.server
    import shutil
    import threading

    repo = tmp_path / "src" / "curate-main"
    shutil.copytree(
        REPO / "plugins", repo / "plugins", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.make_archive(str(tmp_path / "www" / "curate-main"), "zip", tmp_path / "src")
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "www")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = tmp_path / "fo-plugins"
    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=str(target))
    cli = str(Path(sys.executable).with_name("fiftyone"))
    url = f"http://127.0.0.1:{server.server_address[1]}/curate-main.zip"
    try:
        run = subprocess.run(
            [cli, "plugins", "download", url, "--plugin-names", "@curate/deepfakes"],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert run.returncode == 0, run.stderr[-2000:]
    installed = target / "@curate" / "deepfakes"
    assert (installed / "fiftyone.yml").exists() and (installed / "assets" / "icon.svg").exists()
    plugins = subprocess.run(
        [cli, "plugins", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "@curate/deepfakes" in plugins.stdout, plugins.stderr[-2000:]
    ops = subprocess.run(
        [cli, "operators", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    for uri in (DETECT, ACT, EXPORT):
        assert uri in ops.stdout, ops.stderr[-2000:]


# -- the database the tests use --------------------------------------------------------------
def test_tests_use_their_own_mongod():
    """conftest starts a mongod for these tests alone: FiftyOne connects to its URI and starts
    no shared database service that another FiftyOne process could own or stop."""
    import fiftyone.core.odm.database as fodb

    uri = os.environ["FIFTYONE_DATABASE_URI"]
    assert fo.config.database_uri == uri
    port = int(uri.rsplit(":", 1)[1])
    fo.Dataset().delete()  # a round trip through the database
    assert fodb.get_db_client().address == ("127.0.0.1", port)
    assert fodb._db_service is None


# -- a model that passes the form but cannot load ----------------------------------------------
@pytest.fixture
def corrupt_model(tiny_checkpoint, tmp_path) -> str:
    """config.json + preprocessor_config.json + a model.safetensors that is not one."""
    import shutil

    folder = tmp_path / "corrupt-weights"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(Path(tiny_checkpoint) / name, folder / name)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    return str(folder)


def test_model_that_cannot_load_fails_the_run_with_its_error(dataset, corrupt_model):
    assert cfo.model_problem(corrupt_model) is None  # configs, labels, a weights file: passes
    with pytest.raises(ExecutionError, match="Error while deserializing header"):
        foo.get_operator(DETECT)(dataset, model=corrupt_model)
    # the library raises when the run is set up, before the first chunk or any write
    with pytest.raises(Exception, match="deserializing header"):
        cfo.iter_score_samples(dataset, DeepfakeScorer(corrupt_model))
    assert dataset.exists("fake_prob").count() == 0

    foo.get_operator(DETECT)(dataset, model=corrupt_model, delegate=True)
    (result,) = DelegatedOperationService().execute_queued_operations(
        operator=DETECT, dataset_name=dataset.name
    )
    assert "Error while deserializing header" in str(result.error)
    (doc,) = DelegatedOperationService().list_operations(dataset_name=dataset.name)
    assert doc.run_state == "failed"


def test_a_model_that_fails_to_load_is_shown_in_the_app_before_the_run_fails(
    dataset, corrupt_model
):
    """The detector loads inside the run (the App shows "Executing..." meanwhile, no Done
    button): nothing reaches the App before it has loaded, and a load that fails sends its
    reason to the progress box and a notification, then raises."""
    from fiftyone.operators.message import GeneratedMessage

    ctx = operator_context(DETECT, dataset, {"model": corrupt_model})
    stream = foo.get_operator(DETECT).execute(ctx)
    sent = []
    with pytest.raises(Exception, match="deserializing header"):
        for message in stream:
            assert isinstance(message, GeneratedMessage)
            sent.append((message.body.operator_uri.rsplit("/", 1)[-1], message.body.params))
    label = f"Could not start scoring with {corrupt_model}: Error while deserializing header"
    assert sent[0][0] == "set_progress" and sent[0][1]["label"].startswith(label)
    assert sent[1][0] == "notify" and sent[1][1]["variant"] == "error"
    assert dataset.exists("fake_prob").count() == 0


def test_the_first_progress_report_comes_after_one_batch(dataset, tiny_checkpoint):
    events = list(cfo.iter_score_samples(dataset, DeepfakeScorer(tiny_checkpoint, batch_size=2)))
    assert [e.done for e in events] == [2, len(dataset)]  # one batch, then chunks of 4 batches
    assert events[0].label == f"Scored 2 of {len(dataset)} samples (0 unreadable)"


def test_model_check_does_not_remember_failures(dataset, tiny_checkpoint, tmp_path):
    """A model that is not there yet, then downloaded, passes the form at once (no restart);
    a local model whose config changes is checked again."""
    import shutil

    later = tmp_path / "downloaded-later"

    def form_error() -> str | None:
        ctx = operator_context(DETECT, dataset, {"model": str(later)})
        model = foo.get_operator(DETECT).resolve_input(ctx).type.properties["model"]
        return model.error_message if model.invalid else None

    assert f"There is no folder {later} on the server" in form_error()
    shutil.copytree(tiny_checkpoint, later)
    assert form_error() is None
    config = later / "config.json"
    config.write_text(config.read_text().replace('"Fake"', '"Sky"'))
    assert "cannot be read as synthetic or real" in form_error()


# -- operator names -----------------------------------------------------------------------------
def test_operator_labels_match_their_forms(dataset):
    """The operator browser's label and the form's title are one name (the README's)."""
    want = {DETECT: "Detect deepfakes", ACT: "Apply deepfake threshold",
            EXPORT: "Export to Parquet"}  # fmt: skip
    for uri, label in want.items():
        op = foo.get_operator(uri)
        assert op.config.label == label
        assert op.resolve_input(operator_context(uri, dataset, {})).view.label == label


# -- export: provenance rule options, paths ----------------------------------------------------
def test_export_operator_passes_the_provenance_rule_options(evidence_dataset, tmp_path):
    import pyarrow.parquet as pq

    ds = evidence_dataset.clone()
    try:
        ids, probs = ds.values(["id", "fake_prob"])
        labels = [None if p is None or p != p else fo.Classification(label=label_for(p))
                  for p in probs]  # fmt: skip
        cfo.check_fields(ds)  # declares deepfake (Classification) and deepfake_error
        ds.set_values("deepfake", labels)
        export = foo.get_operator(EXPORT)
        for strong, conflicts in ((True, False), (False, True), (True, True)):
            rule = DecisionRule(0.5, unscored="keep", remove_strong_evidence=strong,
                                review_conflicts=conflicts)  # fmt: skip
            out = tmp_path / f"kept-{strong}-{conflicts}.parquet"
            export(ds, str(out), threshold=0.5, unscored="keep",
                   remove_strong_evidence=strong, review_conflicts=conflicts)  # fmt: skip
            _, probs, synthetic, evidence = ds.values(
                ["id", "fake_prob", "provenance_synthetic", "provenance_strong"]
            )
            want = rule.decide_many(probs, synthetic, evidence)
            table = pq.read_table(out)
            kept = {i for i, o in zip(ids, want, strict=True) if o == "keep"}
            assert set(table.column("sample_id").to_pylist()) == kept
            assert set(table.column("decision").to_pylist()) == {"keep"}
            meta = pq.read_schema(out).metadata
            assert meta[b"curate.remove_strong_evidence"] == str(strong).lower().encode()
            assert meta[b"curate.review_conflicts"] == str(conflicts).lower().encode()
    finally:
        ds.delete()


@pytest.fixture
def scored(dataset, tiny_checkpoint):
    cfo.score_samples(dataset.limit(3), DeepfakeScorer(tiny_checkpoint))
    return dataset.limit(3)


def test_export_overwrites_only_a_parquet_file_curate_wrote(scored, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = foo.get_operator(EXPORT)
    bashrc = tmp_path / ".bashrc"
    bashrc.write_text("export PATH=/usr/bin\n")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), other)
    for path in (bashrc, other):
        before = path.read_bytes()
        msg = _error(lambda p=path: run(scored, str(p), only_kept=False, overwrite=True))
        assert f"{path} is not a Parquet file written by curate" in msg, msg
        with pytest.raises(cfo.ExportPathError, match="not a Parquet file written by curate"):
            cfo.export_parquet(scored, path, overwrite=True)
        assert path.read_bytes() == before
    ours = tmp_path / "kept.parquet"
    run(scored, str(ours), only_kept=False)
    first = pq.read_table(ours).num_rows
    run(scored.limit(1), str(ours), only_kept=False, overwrite=True)  # ours: replaced
    assert first == 3 and pq.read_table(ours).num_rows == 1


def test_export_creates_no_folders(scored, tmp_path):
    missing = tmp_path / "missing" / "sub"
    msg = _error(lambda: foo.get_operator(EXPORT)(scored, str(missing / "out.parquet")))
    assert f"the folder {missing} does not exist; create it first" in msg
    with pytest.raises(cfo.ExportPathError, match="does not exist"):
        cfo.export_parquet(scored, missing / "out.parquet")
    assert not (tmp_path / "missing").exists()


def test_export_root_confines_exports(scored, tmp_path, monkeypatch):
    root = tmp_path / "exports"
    (root / "ok").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    monkeypatch.setenv(cfo.EXPORT_ROOT_ENV, str(root))
    run = foo.get_operator(EXPORT)
    for path in (outside / "out.parquet", root / "escape" / "out.parquet", tmp_path / "x.pq"):
        msg = _error(lambda p=path: run(scored, str(p), only_kept=False))
        assert f"is outside the export folder {root}" in msg, path
        with pytest.raises(cfo.ExportPathError, match="outside the export folder"):
            cfo.export_parquet(scored, path)
    assert not list(outside.iterdir())
    run(scored, str(root / "ok" / "kept.parquet"), only_kept=False)
    assert (root / "ok" / "kept.parquet").exists()
    # the form says where exports go
    ctx = operator_context(EXPORT, scored, {})
    path_prop = foo.get_operator(EXPORT).resolve_input(ctx).type.properties["path"]
    assert str(root) in path_prop.view.description
    monkeypatch.setenv(cfo.EXPORT_ROOT_ENV, str(tmp_path / "no-such-root"))
    assert "does not exist" in cfo.path_problem(root / "ok" / "kept.parquet")


def test_export_failures_are_one_line_never_a_traceback(scored, tmp_path):
    """/proc passes permission checks as root but holds no files: the form says so; a write
    that fails after the form passed is one line in the App's progress box and a
    notification, and `ExportPathError` for Python callers."""
    msg = _error(lambda: foo.get_operator(EXPORT)(scored, "/proc/kept.parquet", only_kept=False))
    assert "cannot write to the folder /proc" in msg
    with pytest.raises(cfo.ExportPathError, match="cannot write to the folder /proc") as info:
        cfo.export_parquet(scored, "/proc/kept.parquet")
    assert "\n" not in str(info.value)

    # The folder disappears between the form's check and the run (as it can in the App).
    gone = tmp_path / "gone"
    gone.mkdir()
    params = {"path": str(gone / "kept.parquet"), "only_kept": False}
    ctx = operator_context(EXPORT, scored, params)
    op = foo.get_operator(EXPORT)
    assert op.resolve_input(ctx).type.properties["path"].invalid is not True
    gone.rmdir()
    reason = f"the folder {gone} does not exist; create it first (exports create no folders)"
    sent = []
    with pytest.raises(cfo.ExportPathError) as info:
        for message in op.execute(ctx):
            sent.append((message.body.operator_uri.rsplit("/", 1)[-1], message.body.params))
    assert str(info.value) == reason
    assert sent == [
        ("set_progress", {"label": f"Export failed, nothing was written: {reason}"}),
        ("notify", {"message": f"Export failed, nothing was written: {reason}",
                    "variant": "error"}),
    ]  # fmt: skip
    assert not gone.exists()


def test_a_write_that_fails_is_one_line_and_leaves_nothing(scored, tmp_path):
    """Every check passes and the write itself fails: a file-size limit (RLIMIT_FSIZE, as a
    full disk or a quota would) stops it part-way."""
    import resource
    import signal

    out = tmp_path / "export.parquet"
    assert cfo.path_problem(out) is None
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(cfo.ExportPathError) as info:
            foo.get_operator(EXPORT)(scored, str(out), only_kept=False)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert str(info.value) == f"cannot write {out}: File too large"
    assert list(tmp_path.iterdir()) == []


def test_a_failure_mid_run_reaches_the_app_and_still_raises(dataset):
    """Once the App streams progress, an exception only cuts the stream: the operator first
    sends the reason to the progress box and a notification, then raises for the log and
    Python callers."""
    import sys

    from fiftyone.operators.message import GeneratedMessage

    detect = sys.modules[type(foo.get_operator(DETECT)).__module__]

    def events():
        yield cfo.ScoreProgress(done=2, total=4, scored=2, failed=0)
        raise RuntimeError("the database went away")

    ctx = operator_context(DETECT, dataset, {})
    sent = []
    with pytest.raises(RuntimeError, match="the database went away"):
        for message in detect._report_progress(ctx, events):
            assert isinstance(message, GeneratedMessage)
            sent.append((message.body.operator_uri, message.body.params))
    assert sent[0][1] == {
        "label": "Scored 2 of 4 samples (0 unreadable) · closing this box does not stop the run",
        "progress": 0.5,
    }
    assert ("set_progress", {"label": "Scoring failed: the database went away"}) in [
        (uri.rsplit("/", 1)[-1], params) for uri, params in sent
    ]
    assert any(p.get("variant") == "error" for _, p in sent)


# -- the forms say what will happen ------------------------------------------------------------
def _form(uri: str, samples, **params):
    return foo.get_operator(uri).resolve_input(operator_context(uri, samples, params)).type


def test_forms_lead_with_their_summary(boundary_dataset, photo_paths, tiny_checkpoint):
    ds = boundary_dataset
    cfo.check_fields(ds)
    assert list(_form(ACT, ds).properties)[0] == "preview"
    assert list(_form(EXPORT, ds).properties)[0] == "preview"
    one = fo.Dataset()
    try:
        one.add_sample(fo.Sample(filepath=photo_paths[0]))
        form = _form(DETECT, one, model=tiny_checkpoint)
        assert list(form.properties)[0] == "summary"
        assert form.properties["summary"].view.label == "1 of 1 sample will be scored"
    finally:
        one.delete()


def test_with_a_review_band_the_form_says_exactly_what_happens(boundary_dataset):
    ds = boundary_dataset
    form = _form(ACT, ds, use_review_band=True, review_low=0.3, review_high=0.7, threshold=0.5)
    threshold = form.properties["threshold"].view.description
    assert "the band (0.3 to 0.7) decides and this number changes no outcome" in threshold
    preview = form.properties["preview"].view
    counts = cfo.count_decisions(ds, DecisionRule(0.5, review_band=(0.3, 0.7)))
    assert preview.label == (
        f"Of {len(ds)} samples: {counts['keep']} kept, {counts['remove']} synthetic, "
        f"{counts['review']} to review, {counts['unscored']} unscored"
    )
    assert preview.description == (
        "fake_prob < 0.3: kept; 0.3 ≤ fake_prob < 0.7: to review (tagged 'deepfake_review'); "
        "fake_prob ≥ 0.7: synthetic (tagged 'synthetic'); no score (unreadable image): set "
        "apart as unscored (tagged 'deepfake_unscored')"
    )
    plain = _form(ACT, ds, threshold=0.5).properties["threshold"].view.description
    assert "at or above this are synthetic" in plain


def test_apply_result_lists_only_what_it_did(boundary_dataset):
    ds = boundary_dataset
    op = foo.get_operator(ACT)

    def output(**params) -> dict:
        ctx = operator_context(ACT, ds, params)
        results = op.execute(ctx)
        out = op.resolve_output(operator_context(ACT, ds, params, results=results)).type
        return {k: results.get(k) for k in out.properties}

    got = output(threshold=0.5)
    assert set(got) == {"outcomes", "tags", "decision_field"}  # no empty "Saved view"
    counts = cfo.count_decisions(ds, DecisionRule(0.5))
    assert got["outcomes"] == (
        f"{counts['keep']} samples kept, {counts['remove']} samples synthetic, 0 samples to "
        f"review, {counts['unscored']} samples unscored"
    )
    assert got["tags"] == (
        "'synthetic' on the synthetic samples, 'deepfake_unscored' on the unscored samples"
    )
    assert output(threshold=0.5, action="save_view", view_name="v")["saved_view"] == "v"
    deleted = output(threshold=0.5, action="delete", confirm_delete=True)["deleted"]
    assert deleted == counts["remove"]


def test_applying_in_the_app_shows_the_decision_on_tiles(boundary_dataset):
    """After an App run: the dataset reloads, the decision field replaces the 0.5 label among
    the active fields, and the App takes the dataset's colours."""
    ds = boundary_dataset
    ctx = operator_context(ACT, ds, {"threshold": 0.5}, active_fields=["deepfake", "gt"])
    foo.get_operator(ACT).execute(ctx)
    sent = {r.operator_uri.rsplit("/", 1)[-1]: r.params for r in ctx.executor._requests}
    assert sent["set_active_fields"] == {"fields": ["gt", "deepfake_decision"]}
    assert "reload_dataset" in sent
    colors = {f["path"]: f for f in sent["set_color_scheme"]["fields"]}
    assert colors["deepfake_decision"]["valueColors"][0] == {"value": "keep", "color": "#0072B2"}
    assert sent["set_color_scheme"]["color_by"] == "value"


def test_export_follows_the_last_applied_decision(boundary_dataset, tmp_path):
    import pyarrow.parquet as pq

    ds = boundary_dataset
    cfo.check_fields(ds)
    source = _form(EXPORT, ds).properties["decision_source"].view.label
    assert source == "No decision has been applied to these scores: exporting with the rule below"

    foo.get_operator(ACT)(ds, threshold=0.5, review_band=(0.3, 0.7))
    form = _form(EXPORT, ds)
    assert form.properties["decision_source"].view.label.startswith(
        "Following the decision applied on "
    )
    assert form.properties["threshold"].default == 0.5
    assert form.properties["use_review_band"].default is True
    assert (form.properties["review_low"].default, form.properties["review_high"].default) == (
        0.3,
        0.7,
    )
    changed = _form(EXPORT, ds, threshold=0.4).properties["decision_source"].view.label
    assert changed.startswith("Changed from the decision applied on ")
    assert "(threshold 0.5, review band 0.3–0.7)" in changed

    out = tmp_path / "kept.parquet"
    result = foo.get_operator(EXPORT)(ds, str(out))  # no threshold: the applied decision
    rule = DecisionRule(0.5, review_band=(0.3, 0.7))
    ids, probs = ds.values(["id", "fake_prob"])
    kept = [i for i, o in zip(ids, rule.decide_many(probs), strict=True) if o == "keep"]
    assert pq.read_table(out).column("sample_id").to_pylist() == kept
    assert result.result == {"rows": len(kept), "path": str(out)}
    assert pq.read_schema(out).metadata[b"curate.review_band"] == b"[0.3, 0.7]"
    reviewed = [i for i, o in zip(ids, rule.decide_many(probs), strict=True) if o == "review"]
    assert reviewed and not set(reviewed) & set(kept)  # a sample tagged for review stays out


@pytest.mark.parametrize("delegate", [False, True])
def test_export_streams_its_progress(scored, tmp_path, delegate):
    out = tmp_path / "all.parquet"
    params = {"path": str(out), "only_kept": False}
    if not delegate:
        ctx = operator_context(EXPORT, scored, params)
        sent = [m.body.params for m in foo.get_operator(EXPORT).execute(ctx)]
        n = len(scored)
        assert sent[0] == {"label": f"Wrote {n} of {n} rows", "progress": 1.0}
        assert sent[1] == {"label": f"Exported {n} rows to {out}", "progress": 1.0}
        assert sent[2] == {"message": f"Exported to {out}", "variant": "success"}
        return
    foo.get_operator(EXPORT)(scored, str(out), only_kept=False, delegate=True)
    service = DelegatedOperationService()
    (result,) = service.execute_queued_operations(operator=EXPORT, dataset_name=scored.name)
    assert result.error is None, result.error
    (doc,) = service.list_operations(dataset_name=scored.name, operator=EXPORT)
    assert doc.status.progress == 1.0
    assert doc.status.label == f"Exported {len(scored)} rows to {out}"


def test_large_runs_are_steered_to_scheduling(boundary_dataset, monkeypatch):
    ds = boundary_dataset
    module = sys.modules[type(foo.get_operator(ACT)).__module__]
    monkeypatch.setattr(module, "DELEGATE_ABOVE", 3)
    op = foo.get_operator(ACT)
    ctx = operator_context(ACT, ds, {})
    for allowed in (True, False):
        monkeypatch.setattr(fo.config, "allow_legacy_orchestrators", allowed)
        options = op.resolve_execution_options(ctx)
        assert options.allow_immediate_execution and options.allow_delegated_execution
        assert options.default_choice_to_delegated is allowed
        warning = _form(ACT, ds).properties["long_run"].view
        assert warning.label == f"{len(ds)} samples to decide: a long run"
        hint = "`fiftyone delegated launch`" if allowed else "FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS"
        assert hint in warning.description
    monkeypatch.setattr(module, "DELEGATE_ABOVE", len(ds))
    assert not op.resolve_execution_options(ctx).default_choice_to_delegated
    assert "long_run" not in _form(ACT, ds).properties


def test_a_blank_model_is_an_error_and_no_model_is_the_default(dataset, tiny_checkpoint,
                                                              monkeypatch):  # fmt: skip
    form = _form(DETECT, dataset, model="  ")
    assert form.properties["model"].error_message.startswith("Enter a model")
    monkeypatch.setenv("CURATE_MODEL", tiny_checkpoint)  # the server's default
    assert _form(DETECT, dataset).properties["model"].invalid is not True
    foo.execute_operator(DETECT, {"view": dataset.limit(2), "params": {}})
    assert cfo.scoring_settings(dataset)["curate.model"] == tiny_checkpoint


def test_detect_with_synthetic_labels(dataset, tiny_checkpoint, tmp_path):
    import shutil

    odd = tmp_path / "odd-labels"
    shutil.copytree(tiny_checkpoint, odd)
    config = odd / "config.json"
    config.write_text(config.read_text().replace('"Fake"', '"Sky"').replace('"Real"', '"Sea"'))
    form = _form(DETECT, dataset, model=str(odd))
    assert "'Synthetic labels'" in form.properties["model"].error_message
    form = _form(DETECT, dataset, model=str(odd), synthetic_labels="Cloud")
    assert "'Synthetic labels' names 'Cloud'" in form.properties["synthetic_labels"].error_message
    view = dataset.limit(3)
    foo.get_operator(DETECT)(view, model=str(odd), synthetic_labels=["Sky"])
    paths, probs = view.values(["filepath", "fake_prob"])
    assert (
        probs == DeepfakeScorer(str(odd), synthetic_labels="Sky").score_images(paths)["fake_prob"]
    )
