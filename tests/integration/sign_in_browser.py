"""Signs in with Clever in headless Chromium (Debian's chromium and chromedriver): from the
service's start URL through Clever (the simulator) and back to the Freckle app's landing page,
which must greet the person expected. Each expected greeting is one sign-in, one after the other
in the same browser (a shared classroom device): the next person must land as themselves.

    python3 sign_in_browser.py START_URL LANDING_URL GREETING...

A greeting of `console` is a district administrator: they must land in the service's console.

Before each sign-in it prints `ready N` and waits for a line on stdin: the test tells Clever who
is signed in meanwhile. Exits 0 when every sign-in lands as expected; otherwise prints what did
not and exits 1.
"""

import sys

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from chromium import chromium

STATE_COOKIE = "__Host-rosterflow_sign_in"
# The greeting that stands for a district administrator, who lands in the service's console.
CONSOLE = "console"


def main(start, landing, greetings):
    with chromium() as browser:
        drive(browser, start, landing, greetings)


def drive(browser, start, landing, greetings):
    for step, greeting in enumerate(greetings, start=1):
        print(f"ready {step}", flush=True)
        expect(sys.stdin.readline() != "", f"told to go on before sign-in {step}")
        sign_in(browser, start, landing, greeting, step)


def sign_in(browser, start, landing, greeting, step):
    browser.get(start)
    if greeting == CONSOLE:
        return into_console(browser, start, step)
    try:
        WebDriverWait(browser, 30).until(
            lambda b: b.current_url.startswith(f"{landing}?grant=")
            and b.find_elements(By.ID, "who")
        )
    except TimeoutException:
        expect(False, f"sign-in {step} ended at {browser.current_url}, not the app's landing:\n"
               f"{browser.find_element(By.TAG_NAME, 'body').text}")
    who = browser.find_element(By.ID, "who").text
    expect(who == greeting, f"sign-in {step}: the app greets {who!r}, not {greeting!r}")
    # The login's state cookie is gone once it has been used.
    cookies = browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    left = [c["name"] for c in cookies if c["name"] == STATE_COOKIE]
    expect(not left, f"sign-in {step}: the state cookie outlives the login")
    print(f"landed {step}: {who}", flush=True)


def into_console(browser, start, step):
    """A district administrator: signed in to the console of the service, not to the app."""
    home = start.split("/sign-in/")[0] + "/"
    try:
        WebDriverWait(browser, 30).until(
            lambda b: b.current_url.startswith(home) and "Pipelines" in b.find_element(By.TAG_NAME, "h1").text
        )
    except TimeoutException:
        expect(False, f"sign-in {step} ended at {browser.current_url}, not the console:\n"
               f"{browser.find_element(By.TAG_NAME, 'body').text}")
    expect(browser.find_elements(By.CSS_SELECTOR, 'a[href="/pipelines/sso"]'),
           f"sign-in {step}: the console lists the district's pipeline")
    print(f"landed {step}: the console", flush=True)


def expect(condition, what):
    if not condition:
        print(f"sign-in check failed: {what}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
    print("sign-in ok")
