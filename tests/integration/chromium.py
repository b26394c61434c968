"""The browser of the browser tests: Debian's headless chromium and chromedriver, on a phone's
screen, with a throwaway profile that is removed afterwards."""

import contextlib
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


@contextlib.contextmanager
def chromium():
    with tempfile.TemporaryDirectory(prefix="rosterflow-chromium-", ignore_cleanup_errors=True) as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=390,844",  # a phone's screen
        ]:
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            yield browser
        finally:
            browser.quit()
