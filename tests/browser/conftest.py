"""Browser tests: the admin in a real Chromium (Debian's), driven by Playwright.

Playwright's own browser download is never used: the tests launch the system's chromium
(`/usr/bin/chromium`, installed by `./dev test` when missing) and are skipped, saying why, when
none is found. Every page the browser loads is watched: a response with status >= 500, a
console error or an uncaught page error fails the test. Screenshots go to test-artifacts/browser/
(git-ignored), one per page a test looks at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
PASSWORD = "operator-pw"


def chromium_path() -> str | None:
    explicit = os.environ.get("CRM_PIPELINE_CHROMIUM")
    for candidate in (explicit, *CHROMIUM_CANDIDATES):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no chromium found (/usr/bin/chromium, or CRM_PIPELINE_CHROMIUM): `./dev test` "
            "installs Debian's chromium when run as root"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    # Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests
    # make between browser steps are plain synchronous code, not async code. Only while a
    # module of browser tests runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=path,
                headless=True,
                args=["--no-sandbox", "--disable-background-networking"],
            )
            yield launched
            launched.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Watched:
    """A page whose server errors and console errors are collected, and a screenshot helper."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = re.sub(r"[^\w-]+", "-", name)
        self.problems: list[str] = []
        self.shots: list[Path] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        # Browsers ask every site for /favicon.ico; the admin has none (a 404, not an error of
        # a page).
        if (message.location or {}).get("url", "").endswith("/favicon.ico"):
            return
        self.problems.append(f"console error: {message.text} at {message.location}")

    def _response(self, response: Any) -> None:
        if response.status >= 500:
            self.problems.append(f"HTTP {response.status} for {response.url}")

    def shot(self, label: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{len(self.shots) + 1:02d}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path


@pytest.fixture
def watched(browser, request, live_server) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    watcher = Watched(page, request.node.name.removeprefix("test_"))
    yield watcher
    context.close()
    assert not watcher.problems, watcher.problems


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(
        "operator", email="op@example.com", password=PASSWORD, is_staff=True, is_superuser=True
    )


def sign_in(watched: Watched, live_server, username: str = "operator") -> None:
    page = watched.page
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
