"""The FiftyOne App on loopback, driven in headless Chromium (Debian's `chromium` through
Playwright), for the App tests: launching it on a dataset, the operator browser, the panel menu,
screenshots."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium not installed (apt-get install chromium)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def screenshot_folder(tmp_path: Path, name: str) -> Path:
    """Where a test saves its screenshots: $CURATE_SCREENSHOTS/<name> when set (to keep them),
    else under the test's temp dir. Printed, so a run says where to look."""
    root = os.environ.get("CURATE_SCREENSHOTS")
    folder = Path(root) / name if root else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


@contextlib.contextmanager
def app_page(fo, ds, shots: Path, viewport=(1400, 1000)) -> Iterator:
    """The App on `ds` in a fresh headless Chromium page; `failed.png` when the body raises.
    Yields (page, session)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    session = fo.launch_app(ds, remote=True, address="127.0.0.1", port=port, auto=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            try:
                page.goto(f"http://127.0.0.1:{port}/datasets/{ds.name}", timeout=60_000)
                # the grid's first thumbnail is in the page (its checkbox stays hidden until
                # hovered)
                page.locator('[data-cy="looker-checkbox-input-"]').first.wait_for(
                    state="attached", timeout=90_000
                )
                page.wait_for_timeout(1500)  # let the grid settle before the hotkey
                dismiss_promotions(page)
                yield page, session
            except Exception:
                page.screenshot(path=str(shots / "failed.png"), full_page=True)
                raise
            finally:
                browser.close()
    finally:
        session.close()


def dismiss_promotions(page) -> None:
    """Close the App's "Explore Enterprise" pop-over, which covers the top right corner."""
    dismiss = page.get_by_text("Dismiss", exact=True)
    with contextlib.suppress(Exception):
        dismiss.first.click(timeout=3000)


def open_operator(page, label: str, uri_name: str) -> None:
    """Operator browser: backtick, search by the operator's label, pick it by its name."""
    page.keyboard.press("`")
    page.keyboard.type(label)
    choice = page.get_by_text(uri_name, exact=True)
    choice.wait_for(timeout=30_000)
    choice.click()


def open_panel(page, name: str) -> None:
    """The grid's panel menu (the + beside the Samples tab), then the panel `name`."""
    page.locator('[data-cy="new-panel-btn"]').first.click()
    page.locator(f'[data-cy="new-panel-option-{name}"]').first.click()


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what or condition}")


def click_execute(page) -> None:
    """The operator form's Execute button, once the form has validated."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('button')].some("
        "b => b.textContent.trim() === 'Execute' && !b.disabled)",
        timeout=60_000,
    )
    page.get_by_role("button", name="Execute", exact=True).click()
