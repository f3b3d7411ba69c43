"""What a long use case tells its front end while it runs: steps, rows done, notes."""

from __future__ import annotations


class Progress:
    """Hooks a use case calls as it goes. This base ignores them all (a library caller passes
    nothing); the command line draws them as spinners and progress bars on stderr."""

    def note(self, message: str) -> None:
        """One line worth telling the user now (that a run resumes, for instance)."""

    def wait(self, description: str) -> None:
        """A step that counts no rows starts (loading a model, a Ray job): a spinner."""

    def start(self, description: str, total: int | None, done: int = 0) -> None:
        """A step through `total` rows starts (None: unknown), `done` of them already done."""

    def advance(self, rows: int) -> None:
        """`rows` more rows of the current step are done."""

    def shard_done(self, done: int, total: int) -> None:
        """A job made of shards has `done` of its `total` shards done."""
