"""Print the model the demo should use, building an offline stand-in when there is no other.

Order: $CURATE_MODEL; the real detector if it is in the Hugging Face cache or the Hub
answers; otherwise a random-weight checkpoint with the real architecture, built once under
.cache/ with a loud warning: its scores exercise the pipeline and mean nothing.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from curate.detectors import DEFAULT_MODEL, MODEL_ENV_VAR


def hub_reachable(timeout: float = 3.0) -> bool:
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def cached(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "model.safetensors"), str)


def main() -> None:
    if os.environ.get(MODEL_ENV_VAR):
        print(os.environ[MODEL_ENV_VAR])
        return
    if cached(DEFAULT_MODEL) or hub_reachable():
        print(DEFAULT_MODEL)
        return
    from curate.testing import build_random_checkpoint

    path = Path(__file__).resolve().parents[1] / ".cache" / "random-detector"
    if not (path / "model.safetensors").exists():
        build_random_checkpoint(path, full_size=True, seed=0)
    print(
        f"WARNING: the Hugging Face Hub is not reachable and {DEFAULT_MODEL} is not cached, so "
        f"the demo uses a RANDOM-WEIGHT stand-in with the real architecture ({path}). Its scores "
        f"are meaningless; set {MODEL_ENV_VAR}=/path/to/a/local/copy to use the real detector.",
        file=sys.stderr,
    )
    print(path)


if __name__ == "__main__":
    main()
