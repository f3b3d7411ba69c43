"""Torture test on a corpus nobody here wrote: Pillow's own test images (from its sdist).

Odd modes, 16-bit, palettes with transparency, animations, truncated and fuzzer crash files,
decompression bombs. Every file the folder source lists is exactly one row through the CLI,
`ds.map` (decode=False) and the FiftyOne function, with the same nulls and the same
probabilities in all three; no hang (time limit) and bounded memory (an address-space limit
on every process that decodes).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import CLI_ENV

# Address space allowed to each decoding process: torch and FiftyOne map a few GB of virtual
# memory at import; a decoder that reads /dev/zero or inflates a bomb blows through this.
ADDRESS_SPACE = 12 * 2**30

FRONT_ENDS = textwrap.dedent(
    """
    import json, sys
    import datasets
    from curate import DeepfakeScorer
    from curate.sources import resolve_source

    corpus, model, out = sys.argv[1:4]
    src = resolve_source(corpus)
    names = [row["path"] for b in src.batches(256) for row in b[src.image_column]]
    scorer = DeepfakeScorer(model, device="cpu", dtype="float32", batch_size=16)

    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": None, "path": f"{corpus}/{n}"} for n in names]},
        features=datasets.Features({"image": datasets.Image(decode=False)}),
    )
    mapped = ds.map(scorer, batched=True, batch_size=64, load_from_cache_file=False)
    result = {"names": names, "map": {"fake_prob": list(mapped["fake_prob"]),
                                      "error": list(mapped["deepfake_error"])}}

    import fiftyone as fo
    from curate.integrations import fiftyone as cfo

    fod = fo.Dataset()
    fod.add_samples([fo.Sample(filepath=f"{corpus}/{n}", name=n) for n in names])
    cfo.score_samples(fod, scorer)
    by_name = {s.name: s for s in fod.select_fields(["name", "fake_prob", "deepfake_error"])}
    result["fiftyone"] = {
        "fake_prob": [by_name[n].fake_prob for n in names],
        "error": [by_name[n].deepfake_error for n in names],
    }
    fod.delete()
    with open(out, "w") as f:
        json.dump(result, f)
    """
)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_every_corpus_file_is_one_identical_row_everywhere(
    pillow_corpus, tiny_checkpoint, tmp_path
):
    out = tmp_path / "scored.parquet"
    cli = subprocess.run(
        [sys.executable, "-m", "curate.cli", "score", pillow_corpus, "-o", out,
         "--model", tiny_checkpoint, "--dtype", "float32", "--batch-size", "16"],
        capture_output=True, text=True, env=CLI_ENV, timeout=900, preexec_fn=_limit_memory,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-3000:]
    table = pq.read_table(out, columns=["image", "fake_prob", "deepfake_error"]).to_pylist()

    other = tmp_path / "front_ends.json"
    proc = subprocess.run(
        [sys.executable, "-c", FRONT_ENDS, pillow_corpus, tiny_checkpoint, other],
        capture_output=True, text=True, env=CLI_ENV, timeout=1200, preexec_fn=_limit_memory,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(other.read_text())

    names = result["names"]
    assert len(names) > 500, "the corpus should list hundreds of image files"
    assert len(table) == len(names), "one row per listed file"
    assert [r["image"]["path"] for r in table] == names
    cli_probs = [r["fake_prob"] for r in table]
    cli_errors = [r["deepfake_error"] for r in table]
    for front_end in ("map", "fiftyone"):
        probs, errors = result[front_end]["fake_prob"], result[front_end]["error"]
        assert len(probs) == len(names)
        unscored = [i for i, p in enumerate(probs) if p is None]
        assert unscored == [i for i, p in enumerate(cli_probs) if p is None], front_end
        assert [e is None for e in errors] == [e is None for e in cli_errors], front_end
        assert all((p is None) == (e is not None) for p, e in zip(probs, errors, strict=True))
        scored = [i for i, p in enumerate(probs) if p is not None]
        np.testing.assert_allclose(
            [probs[i] for i in scored], [cli_probs[i] for i in scored], atol=1e-5
        )
    # The corpus is made to break decoders: a good share of it must be refused, with reasons.
    refused = [e for e in cli_errors if e is not None]
    assert len(refused) >= 20
    assert all(len(e) < 300 and "\n" not in e for e in refused)
    assert len(refused) < len(names) - 300, "most of the corpus is readable"


def test_corpus_has_the_breakers_it_is_used_for(pillow_corpus):
    names = set(os.listdir(pillow_corpus))
    # Truncated, bomb and fuzzer files, by their names in Pillow's Tests/images.
    assert any("truncated" in n for n in names)
    assert any("bomb" in n.lower() or "decompression" in n.lower() for n in names)
