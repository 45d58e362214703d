"""Fixtures for the browser tests: a live service on a free port, seeded through its HTTP API, and Debian's
chromium driven by Playwright (sync API).

Chromium: /usr/bin/chromium (the Debian package `chromium`), or the path in the environment variable
CHROMIUM_PATH. Without it the tests skip, except when CI is set: then they fail.
Screenshots of every test go to test-results/e2e/ (gitignored; CI keeps them as artefacts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from .live_service import SCREENSHOTS, LiveService, build_app, chromium_path, free_port, seed

logger = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def live_service(tmp_path_factory) -> Iterator[LiveService]:
    import uvicorn

    data_dir = tmp_path_factory.mktemp("service-data")
    port = free_port()
    config = uvicorn.Config(
        build_app(data_dir), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    service = LiveService(url=f"http://127.0.0.1:{port}", data_dir=data_dir)
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(service.url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the service did not become ready")
        time.sleep(0.2)
    try:
        service.items = seed(service)
        yield service
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def console_browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture()
def console(console_browser, live_service, request):
    """A fresh browser context (empty localStorage) on the console; a screenshot is saved at the end.

    Requests to anything but the live service fail the test (the console must work offline), and so do
    JavaScript errors on the page.
    """
    context = console_browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    foreign: list[str] = []
    js_errors: list[str] = []

    def route(route_request):
        url = route_request.request.url
        if url.startswith(live_service.url) or url.startswith("blob:") or url.startswith("data:"):
            route_request.continue_()
        else:
            foreign.append(url)
            route_request.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    page.goto(live_service.url + "/")
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
        try:
            page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a screenshot must not hide the test's own result
            logger.exception("screenshot failed")
        context.close()
    assert foreign == [], f"the console requested outside resources: {foreign}"
    assert js_errors == [], f"JavaScript errors on the page: {js_errors}"
