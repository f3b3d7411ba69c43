"""The `curate` command line: score, filter, eval, report and adapt, one module per command,
each turning its options into a `curate.app` request and printing the result.

Importing this package imports no torch: commands import what they need when they run, so
`curate --help` and argument errors answer at once.
"""

from __future__ import annotations

import typer

from curate.cli import adapt as adapt_cmd
from curate.cli import eval as eval_cmd
from curate.cli import filter as filter_cmd
from curate.cli import report as report_cmd
from curate.cli import score as score_cmd

app = typer.Typer(
    name="curate",
    help="Find and remove synthetic (AI-generated) images in image datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("score")(score_cmd.score)
app.command("filter")(filter_cmd.filter_)
app.command("eval")(eval_cmd.eval_)
app.command("report")(report_cmd.report_)
app.command("adapt")(adapt_cmd.adapt_)


@app.callback()
def _root() -> None:
    """Find and remove synthetic (AI-generated) images in image datasets."""


def main() -> None:
    app()
