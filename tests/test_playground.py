"""The playground page in a real headless browser: type a prompt, press Generate, and the
streamed text appears. Needs Debian's chromium and chromedriver (`make test` installs them
when it can); skipped with the reason otherwise."""

import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="chargen[serve] is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from live_server import LiveServer  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from chargen import api  # noqa: E402
from chargen.serve import ServeLimits  # noqa: E402

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1100,900")


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.skip("no /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium "
                    "chromium-driver; make test tries when run as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))  # no driver download
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_playground_streams_generated_text(browser, trained_run, tmp_path):
    model = api.load(str(trained_run), device="cpu")
    with LiveServer(model, ServeLimits(precision="fp32")) as server:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.find_element(By.ID, "model").text)  # /info has answered
        browser.find_element(By.ID, "prime").send_keys("The quick ")
        browser.find_element(By.ID, "generate").click()
        wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "status"), "chars/s"))
        output = browser.find_element(By.ID, "output").text
        status = browser.find_element(By.ID, "status").text
        browser.save_screenshot(str(tmp_path / "playground.png"))
    assert output.startswith("The quick ") and len(output) > len("The quick ") + 100
    assert status.startswith("400 characters")  # the length slider's default
    assert (tmp_path / "playground.png").stat().st_size > 0
