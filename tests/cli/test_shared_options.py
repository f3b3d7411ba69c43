"""The options several commands share are one definition: the same name, help and type in
every command that takes them (`curate.cli.common`)."""

from __future__ import annotations

import typer

from curate.cli import app

SHARED = {
    ("score", "eval"): ["--model", "--combine", "--head", "--compile", "--quantize"],
    ("score", "eval", "adapt"): [
        "--revision",
        "--synthetic-labels",
        "--device",
        "--dtype",
        "--batch-size",
        "--image-column",
        "--split",
        "--limit",
    ],  # fmt: skip
    ("score", "adapt"): ["--chunk-rows"],
    ("eval", "adapt"): ["--label-column", "--label-map"],
    ("eval", "report"): ["--out-dir"],
    ("filter", "report"): ["--review-band"],
}


def _params(command: str) -> dict:
    cmd = typer.main.get_command(app).commands[command]
    return {p.opts[0] if p.opts[0].startswith("--") else p.opts[-1]: p for p in cmd.params}


def test_shared_options_read_the_same_in_every_command():
    params = {name: _params(name) for name in ("score", "eval", "adapt", "filter", "report")}
    for commands, options in SHARED.items():
        for option in options:
            seen = [params[c][option] for c in commands]
            helps = {p.help for p in seen}
            assert len(helps) == 1, (option, helps)
            assert len({(p.multiple, repr(p.default)) for p in seen}) == 1, option
    # --overwrite is one flag that says, per command, what it replaces.
    for name in ("score", "eval", "adapt", "filter", "report"):
        assert params[name]["--overwrite"].help.startswith("Replace ")
