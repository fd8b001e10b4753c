"""The demo as its users see it: Debian's Chromium, headless, driven through its
WebDriver (chromedriver) by Selenium, on the pages that `scripts/demo.sh` serves (the
`demo` fixture, shared with test_demo.py). The pages' JavaScript runs for real: the
EventSource and the WebSocket box of the Starlette page, the Django forms and the
admin's static files, Swagger UI on /fastapi/docs.

The browser has no network but loopback: every other host goes to a proxy that does
not exist, so a page that needs a CDN shows it here.

Each page is photographed (PNG) into a temporary directory, or into the directory
that $VIVARIUM_SCREENSHOTS names (relative to the repository): the README's pictures
come from `VIVARIUM_SCREENSHOTS=docs/demo make test-py TESTS=tests/test_browser.py`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import uuid
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support import free_port

ROOT = Path(__file__).resolve().parent.parent
# Debian's packages (chromium, chromium-driver; scripts/sysroot.sh installs them).
# Naming the driver keeps Selenium Manager from looking for, or downloading, one.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 30  # seconds for anything the page does by itself; the machine may be loaded
WINDOW = (1024, 800)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    chosen = os.environ.get("VIVARIUM_SCREENSHOTS")
    where = ROOT / chosen if chosen else tmp_path_factory.mktemp("screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.fail(
                f"{path} is missing: install Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver; scripts/sysroot.sh has them)",
                pytrace=False,
            )
    work = tmp_path_factory.mktemp("chromium")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={work / 'profile'}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        # Loopback bypasses any proxy; everything else goes to a closed port.
        f"--proxy-server=http://127.0.0.1:{free_port()}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(work / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(demo, browser, screenshots):
    _, port, _ = demo
    return Site(browser, f"http://127.0.0.1:{port}", screenshots)


class Site:
    """The browser on the demo: open a path, wait for the page, photograph it."""

    def __init__(self, driver, base: str, screenshots: Path):
        self.driver = driver
        self.base = base
        self.screenshots = screenshots

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)
        self.settled()

    def settled(self) -> None:
        """The document is loaded and its navigation answered 200."""
        self.until(lambda d: d.execute_script("return document.readyState") == "complete",
                   "the page to load")
        status = self.driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].responseStatus")
        assert status == 200, f"{self.driver.current_url} answered {status}"

    def until(self, condition, what: str, timeout: float = WAIT):
        """condition(driver) became true; elements of a page being replaced are retried."""
        wait = WebDriverWait(self.driver, timeout, ignored_exceptions=[StaleElementReferenceException])
        try:
            return wait.until(condition)
        except TimeoutException:
            raise AssertionError(
                f"waited {timeout} s for {what} on {self.driver.current_url}; the page says:\n"
                + self.driver.find_element(By.TAG_NAME, "body").text[-3000:]
            ) from None

    def text(self, selector: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def texts(self, selector: str) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, selector)]

    def console_errors(self) -> list[str]:
        """The console's errors since the last call (the log is drained by reading)."""
        return [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def resources(self) -> list[dict]:
        """Every request the page made after its document: URL and status."""
        return self.driver.execute_script(
            "return performance.getEntriesByType('resource')"
            ".map(e => ({url: e.name, status: e.responseStatus}))")

    def screenshot(self, name: str, through: str = "body > *") -> None:
        """The page from its top to the bottom of the last element `through` matches."""
        width, bottom = self.driver.execute_script(
            "const bottoms = [...document.querySelectorAll(arguments[0])]"
            "  .map(e => e.getBoundingClientRect().bottom + window.scrollY);"
            "return [document.documentElement.clientWidth, Math.max(...bottoms)];", through)
        assert bottom > 0, f"nothing matches {through!r} on {self.driver.current_url}"
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": math.ceil(bottom) + 24, "scale": 1},
        })
        (self.screenshots / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


# What each link of the index leads to: the page's title, or for JSON a key it has.
INDEX_LINKS = {
    "/flask/": "Flask on Vivarium",
    "/django/": "Guestbook",
    "/django/admin/": "Log in | Django site admin",
    "/starlette/": "Starlette on Vivarium",
    "/fastapi/": "FastAPI on Vivarium",
    "/fastapi/docs": "Swagger UI",
    "/flask/interpreter": "interpreter_id",
    "/starlette/info": "interpreter_id",
    "/fastapi/info": "interpreter_id",
}


def test_every_link_of_the_index_reaches_its_app(site):
    site.open("/")
    assert site.text("h1") == "Vivarium demo"
    site.screenshot("index")
    links = sorted({a.get_attribute("href").removeprefix(site.base)
                    for a in site.driver.find_elements(By.CSS_SELECTOR, "a[href]")})
    assert links == sorted(INDEX_LINKS), links
    for path, expected in INDEX_LINKS.items():
        site.open("/")
        site.driver.find_element(By.CSS_SELECTOR, f'a[href="{path}"]').click()
        site.until(lambda d: d.current_url != site.base + "/", f"the click on {path}")
        site.settled()
        if expected == "interpreter_id":
            info = json.loads(site.text("body"))
            assert isinstance(info["interpreter_id"], int), (path, info)
        else:
            assert expected in site.driver.title, (path, site.driver.title)
        if path == "/flask/":
            site.screenshot("flask")
        if path == "/fastapi/":
            site.screenshot("fastapi")
    errors = [e for e in site.console_errors() if "favicon.ico" not in e]
    assert errors == []


def test_starlette_page_receives_events_and_echoes_over_its_websocket(site):
    site.open("/starlette/")
    site.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sse-log li")) >= 3,
               "three server-sent events")
    assert site.text("#sse-status") == "connected"
    assert all("interpreter" in line for line in site.texts("#sse-log li"))

    send = site.driver.find_element(By.ID, "echo-send")
    site.until(lambda d: send.is_enabled(), "the WebSocket to open")
    assert site.text("#ws-status").startswith("connected to ws://127.0.0.1:")
    message = f"hello from Chromium {uuid.uuid4().hex[:8]}"
    box = site.driver.find_element(By.ID, "echo-text")
    box.clear()
    box.send_keys(message)
    send.click()
    site.until(lambda d: "\u2190 " + message in site.texts("#echo-log li"), "the echo")
    assert site.texts("#echo-log li") == ["\u2192 " + message, "\u2190 " + message]
    site.screenshot("starlette")
    errors = [e for e in site.console_errors() if "favicon.ico" not in e]
    assert errors == []


def test_django_guestbook_signs_a_note_that_then_appears(site):
    site.open("/django/")
    note = f"Signed by Chromium {uuid.uuid4().hex[:8]}"
    field = site.driver.find_element(By.NAME, "text")
    field.send_keys(note)
    site.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    site.until(lambda d: any(item.startswith(note) for item in site.texts("ul.notes li")),
               "the note in the list")
    site.settled()  # the redirect after the POST led back to the list, 200
    assert site.driver.current_url == site.base + "/django/"
    site.screenshot("django-guestbook", through="ul.notes")  # the footer shows local paths


def test_django_admin_logs_in_with_its_static_files(site):
    site.open("/django/admin/")
    assert "/django/admin/login/" in site.driver.current_url
    stylesheets_loaded(site)
    site.driver.find_element(By.NAME, "username").send_keys("admin")
    site.driver.find_element(By.NAME, "password").send_keys("admin")
    site.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    site.until(lambda d: d.current_url == site.base + "/django/admin/", "the admin index")
    site.settled()
    assert "Site administration" in site.driver.title
    assert "admin" in site.text("#user-tools").lower()
    assert "Notes" in site.texts("#content-main a")
    stylesheets_loaded(site)
    site.screenshot("django-admin", through="#content-main, #content-related")


def stylesheets_loaded(site) -> None:
    """The admin's CSS came from Caddy (/django/static/, 200) and styles the page."""
    css = [r for r in site.resources() if r["url"].endswith(".css")]
    assert any(r["url"] == site.base + "/django/static/admin/css/base.css" for r in css), css
    assert all(r["status"] == 200 for r in css), css
    rules = site.driver.execute_script(
        "return [...document.styleSheets].filter(s => s.href && s.href.endsWith('/base.css'))"
        ".map(s => s.cssRules.length)")
    assert rules and rules[0] > 100, rules
    header = site.driver.execute_script(
        "return getComputedStyle(document.getElementById('header')).backgroundColor")
    assert header not in ("rgba(0, 0, 0, 0)", "transparent"), header


def test_fastapi_docs_render_and_call_the_api_offline(site):
    site.open("/fastapi/docs")
    site.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 3,
               "Swagger UI's operations")
    operations = {
        (block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
         block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").text)
        for block in site.driver.find_elements(By.CSS_SELECTOR, ".opblock")
    }
    assert operations == {("POST", "/items"), ("GET", "/whoami"), ("GET", "/info")}, operations

    # Try GET /whoami from the page: Swagger UI sends the header typed in to the app
    # and shows what the dependency chain made of it.
    whoami = site.driver.find_element(By.ID, "operations-default-whoami_whoami_get")
    whoami.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    site.until(lambda d: whoami.find_elements(By.CSS_SELECTOR, ".try-out__btn"), "Try it out")
    whoami.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    site.until(lambda d: whoami.find_elements(By.CSS_SELECTOR, "tr[data-param-name=x-token] input"),
               "the X-Token field")
    whoami.find_element(By.CSS_SELECTOR, "tr[data-param-name=x-token] input").send_keys("t-alice")
    whoami.find_element(By.CSS_SELECTOR, ".execute").click()
    answer = ".live-responses-table tr.response"
    site.until(lambda d: whoami.find_elements(By.CSS_SELECTOR, answer), "the answer to GET /whoami")
    status = whoami.find_element(By.CSS_SELECTOR, f"{answer} .response-col_status").text
    assert status == "200", status
    body = whoami.find_element(By.CSS_SELECTOR, f"{answer} .response-col_description pre").text
    assert json.loads(body) == {"user": "alice"}, body

    # Everything came from the demo; the CDN FastAPI would use is out of reach here.
    urls = [r["url"] for r in site.resources()]
    assert urls and all(url.startswith(site.base + "/fastapi/") for url in urls), urls
    cdn = site.driver.execute_async_script(
        "const done = arguments[0];"
        "fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css')"
        ".then(() => done('fetched'), () => done('unreachable'))")
    assert cdn == "unreachable"
    site.screenshot("fastapi-docs", through=f"#operations-default-whoami_whoami_get {answer}")
    errors = [e for e in site.console_errors() if "favicon.ico" not in e and "cdn.jsdelivr" not in e]
    assert errors == []
