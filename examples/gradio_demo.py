"""The model card's Gradio demo, rebuilt on `DeepfakeScorer`: upload an image, see Fake/Real.

    pip install "curate[gradio]"
    python examples/gradio_demo.py [--model PATH_OR_HUB_ID] [--device auto] [--port 7860]

Same interface as the seed (an image in, a two-class label out), but the image goes through
the project's scorer: the checkpoint's own preprocessing, the Fake index read from its
`id2label`, EXIF orientation and transparency handled, and an unreadable upload reported as an
error instead of a crash.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from curate import DeepfakeScorer

TITLE = "open-deepfake-detection"
DESCRIPTION = (
    "Upload an image to detect whether it is AI-generated (Fake) or a real photograph (Real)."
)


def make_classifier(scorer: DeepfakeScorer) -> Callable[[Any], dict[str, float]]:
    """`classify_image(image) -> {"Fake": p, "Real": 1 - p}` for `gr.Label`.

    `image` is what `gr.Image(type="numpy")` passes (an HWC uint8 array), or anything else the
    scorer accepts (PIL image, path, bytes). Raises `ValueError` with the reason when the
    image cannot be read."""

    def classify_image(image: Any) -> dict[str, float]:
        if image is None:
            raise ValueError("no image: upload one first")
        row = scorer.score_images([image])
        if row["deepfake_error"][0] is not None:
            raise ValueError(f"cannot score this image: {row['deepfake_error'][0]}")
        return {"Fake": row["fake_prob"][0], "Real": row["real_prob"][0]}

    return classify_image


def build_demo(scorer: DeepfakeScorer | None = None):
    """The `gr.Interface` of the seed demo, scoring with `scorer` (default: the default model)."""
    import gradio as gr

    classify = make_classifier(scorer or DeepfakeScorer(batch_size=1))

    def classify_for_ui(image: Any) -> dict[str, float]:
        try:
            return classify(image)
        except ValueError as exc:
            raise gr.Error(str(exc)) from None

    return gr.Interface(
        fn=classify_for_ui,
        inputs=gr.Image(type="numpy"),
        outputs=gr.Label(num_top_classes=2, label="Deepfake Detection"),
        title=TITLE,
        description=DESCRIPTION,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Hub id or local directory")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args(argv)
    scorer = DeepfakeScorer(model=args.model, device=args.device, dtype=args.dtype, batch_size=1)
    scorer.load()  # fail now, with the loader's message, rather than on the first upload
    build_demo(scorer).launch(server_name=args.host, server_port=args.port)


if __name__ == "__main__":
    main()
