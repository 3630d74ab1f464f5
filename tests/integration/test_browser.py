"""The example apps in a real browser: a borrower's open page and the back office in two tabs.

Each example app runs as two server processes on one Redis and one SQLite file. In one
headless Chromium, tab 1 is the borrower's "my loan" page on server A, tab 2 the back office
on server B. Once the back office's "Renew link" has been acknowledged (the POST returned and
the back office shows the new token), every reload of the borrower's page shows the new link,
valid, never "expired".

The browser is Debian's ``chromium`` driven through Debian's ``chromedriver`` (``apt-get
install chromium chromium-driver``; .ci/run installs them): nothing is downloaded at test time.

The screenshots go to the test's tmp dir. ``SCREENSHOTS_DIR=docs/_static/tutorial`` also writes
the Flask example's into that directory, for docs/tutorial.md (not ``FRESHLINK_``-prefixed: the
example servers read every ``FRESHLINK_*`` variable as a setting)::

    SCREENSHOTS_DIR=docs/_static/tutorial pytest tests/integration/test_browser.py -k flask
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.wait import WebDriverWait

from example_servers import ROOT, example_servers

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]

#: Generous: the machine running the tests may be busy; waits end as soon as the page is there.
WAIT = 60.0
CYCLES = 3  # expire, then renew, through the back office
RELOADS = 3  # reloads of the borrower's page after each acknowledged write
NO_FASTAPI = "examples/fastapi_lending/app.py is not in this checkout"
INSTALL = "apt-get install chromium chromium-driver, or run bash .ci/run"
#: The loan 1 row of the back office's table (Ada's loan, the one "my loan" shows her).
ROW = "//tr[td[1]='#1']"

APPS = [
    "flask",
    "django",
    pytest.param(
        "fastapi",
        marks=pytest.mark.skipif(
            not (ROOT / "examples" / "fastapi_lending" / "app.py").exists(), reason=NO_FASTAPI
        ),
    ),
]


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """A headless Chromium (Debian's), one per test: no cookies carried between apps."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        missing = "chromium" if chromium is None else "chromedriver"
        if os.environ.get("REQUIRE_CHROMIUM", "") not in ("", "0"):
            pytest.fail(f"{missing} not found on PATH and REQUIRE_CHROMIUM=1 ({INSTALL})")
        pytest.skip(f"{missing} not found on PATH ({INSTALL})")
    # The driver's path is given, so Selenium Manager is never asked to find (or download) one;
    # SE_OFFLINE tells it to stay offline should anything ever call it.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    options.add_argument("--headless=new")
    options.add_argument("--disable-dev-shm-usage")  # containers: a small /dev/shm
    options.add_argument("--window-size=1000,700")  # also the screenshots' size
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium refuses to run as root with it
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


class Shots:
    """Screenshots into the test's tmp dir, and the Flask example's into ``SCREENSHOTS_DIR``."""

    def __init__(self, driver: WebDriver, app: str, tmp: Path) -> None:
        self.driver, self.app = driver, app
        self.dirs = [tmp]
        tmp.mkdir(parents=True, exist_ok=True)
        wanted = os.environ.get("SCREENSHOTS_DIR")
        if wanted and app == "flask":  # the tutorial shows the Flask example
            target = Path(wanted) if Path(wanted).is_absolute() else ROOT / wanted
            target.mkdir(parents=True, exist_ok=True)
            self.dirs.append(target)

    def take(self, name: str) -> None:
        png = self.driver.get_screenshot_as_png()
        assert png.startswith(b"\x89PNG"), "not a PNG"
        for d in self.dirs:
            (d / f"{self.app}-{name}.png").write_bytes(png)


def wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, WAIT, ignored_exceptions=[StaleElementReferenceException])


def gone(element: WebElement) -> Callable[[WebDriver], bool]:
    """A wait condition: ``element``'s page has been replaced by the next one.

    Like ``ec.staleness_of``, except that Chromium, asked about the node while the next
    document replaces its own, may answer "Node with given id does not belong to the
    document" (a WebDriverException, not a StaleElementReferenceException): gone as well.
    """

    def check(_driver: WebDriver) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    return check


def borrower_link(driver: WebDriver) -> tuple[str, str]:
    """The link's state and token as the borrower's page in the current tab shows them."""
    link = wait(driver).until(ec.presence_of_element_located((By.ID, "link")))
    return str(link.get_attribute("data-link-state")), str(link.get_attribute("data-token"))


def reload_borrower(driver: WebDriver) -> tuple[str, str]:
    """Reload the borrower's page; what the new page (not the old one) shows."""
    old = driver.find_element(By.ID, "link")
    driver.refresh()
    wait(driver).until(gone(old))
    assert driver.current_url.endswith("/my-loan"), driver.current_url
    return borrower_link(driver)


def office_token(driver: WebDriver) -> str:
    """Loan 1's token as the back office (which reads the database directly) shows it."""
    cell: WebElement = wait(driver).until(
        ec.presence_of_element_located((By.XPATH, f"{ROW}/td[3]"))
    )
    return str(cell.text).strip()


def press(driver: WebDriver, label: str) -> str:
    """Press ``label`` on loan 1 in the back office; its new token once acknowledged.

    The form posts, the app commits and invalidates, then redirects to the back office, which
    shows the new token: that page is the acknowledgement the staff member sees.
    """
    before = office_token(driver)
    row = driver.find_element(By.XPATH, ROW)
    driver.find_element(By.XPATH, f"{ROW}//button[normalize-space()='{label}']").click()
    wait(driver).until(gone(row))
    wait(driver).until(lambda d: office_token(d) != before)
    assert driver.current_url.endswith("/staff"), driver.current_url
    return office_token(driver)


@pytest.mark.parametrize("app", APPS)
def test_open_borrower_page_shows_the_renewal_acknowledged_in_another_tab(
    app: str, redis_url: str, browser: WebDriver, tmp_path: Path
) -> None:
    shots = Shots(browser, app, tmp_path / "screenshots")
    with example_servers(app, redis_url, tmp_path) as (a, b):
        # Tab 1: Ada logs in on server A; her seeded link has expired (now cached).
        browser.get(f"{a.base}/login/1")
        wait(browser).until(ec.url_to_be(f"{a.base}/my-loan"))
        state, token = borrower_link(browser)
        assert state == "expired"
        shots.take("borrower-expired")
        borrower_tab = browser.current_window_handle

        # Tab 2: the back office on server B.
        browser.switch_to.new_window("tab")
        office_tab = browser.current_window_handle
        browser.get(f"{b.base}/staff")
        assert office_token(browser) == token  # the same loan, the same database

        seen: list[tuple[str, str]] = []
        for cycle in range(CYCLES):
            if cycle:
                # Expire it again, so each renewal replaces an "expired" page in the cache.
                expired = press(browser, "Expire link")
                browser.switch_to.window(borrower_tab)
                assert reload_borrower(browser) == ("expired", expired)
                browser.switch_to.window(office_tab)
            renewed = press(browser, "Renew link")
            if cycle == 0:
                shots.take("back-office")
            browser.switch_to.window(borrower_tab)
            for _ in range(RELOADS):
                page = reload_borrower(browser)
                seen.append(page)
                assert page == ("valid", renewed), f"cycle {cycle}: {page}, renewed {renewed}"
            if cycle == 0:
                shots.take("borrower-renewed")
            browser.switch_to.window(office_tab)
    assert len(seen) == CYCLES * RELOADS
    assert len({token for _, token in seen}) == CYCLES  # a new link each cycle
    for name in ("borrower-expired", "back-office", "borrower-renewed"):
        assert (shots.dirs[0] / f"{app}-{name}.png").stat().st_size > 0
