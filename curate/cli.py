"""The `curate` command line."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="curate",
    help="Find and remove synthetic (AI-generated) images in image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Find and remove synthetic (AI-generated) images in image datasets."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
