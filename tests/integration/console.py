"""Drives the admin console in headless Chromium (Debian's chromium and chromedriver): a page
asked for without a session leads to sign-in; the admin signs in, reads the dashboard, the
pipeline's page and the held run's page on a laptop (1280 px wide) and on a phone (390 px),
finds the held run from the dashboard, reads what its plan would change, approves it, and sees
it applied by a worker.

On the phone, no page scrolls sideways, and the held run's state, the reason it is held and its
Approve button are on the first screen. Each page is written as a whole-page PNG to SHOTS
(`{laptop,phone}-{dashboard,pipeline,held-run}.png`), for a person to look at.

    python3 console.py BASE_URL ADMIN_TOKEN HELD_RUN SHOTS

Exits 0 when every step holds; otherwise prints what did not and exits 1.
"""

import base64
import os
import re
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from chromium import chromium


# A laptop's and a phone's screen, in CSS pixels.
LAPTOP = (1280, 800, False)
PHONE = (390, 844, True)

# A stored timestamp as it used to be shown: every time now reads "Tue 8 Dec, 02:30 EST".
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}")


def main(base, token, held_run, shots):
    os.makedirs(shots, exist_ok=True)
    with chromium() as browser:
        drive(browser, base, token, held_run, shots)
    print(f"screenshots in {shots}")


def drive(browser, base, token, held_run, shots):
    browser.implicitly_wait(5)
    # Without a session, a run's page leads to sign-in, and back to the run's page after it.
    browser.get(f"{base}/runs/{held_run}")
    expect("/login?next=" in browser.current_url, f"sent to sign in, not {browser.current_url}")

    browser.find_element(By.NAME, "user").send_keys("Alice Admin")
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.TAG_NAME, "form").submit()
    WebDriverWait(browser, 30).until(lambda b: "/login" not in b.current_url)
    expect(f"/runs/{held_run}?signed_in=1" in browser.current_url, f"the run's page, not {browser.current_url}")
    glance(browser, base, held_run, shots)
    screen(browser, LAPTOP)
    browser.get(f"{base}/")
    expect("Pipelines" in browser.find_element(By.TAG_NAME, "h1").text, "the dashboard")
    held_cell = browser.find_element(By.CSS_SELECTOR, "td.held").text
    expect(held_cell == "1", f"the dashboard shows one held run, not {held_cell!r}")

    browser.find_element(By.LINK_TEXT, "console-demo").click()
    WebDriverWait(browser, 30).until(lambda b: "/pipelines/" in b.current_url)
    expect("Held for approval" in browser.page_source, "the pipeline page lists the held run")
    browser.find_element(By.LINK_TEXT, f"Run {held_run}").click()
    WebDriverWait(browser, 30).until(lambda b: "/runs/" in b.current_url)
    page = browser.find_element(By.TAG_NAME, "main").text
    expect("what its plan would change" in page, "the held run's page explains it is not applied")
    expect("student.archive" in page, "the plan's changes by type include the archives")
    archived = browser.find_elements(By.CSS_SELECTOR, "table.per-school td[data-label='Students archived']")
    expect(archived and archived[0].text == "20", "the plan's changes per school, a column per kind: 20 students archived")
    expect("Changes per school" in page, "the plan's changes per school")

    browser.find_element(By.XPATH, "//button[text()='Approve']").click()
    WebDriverWait(browser, 60).until(lambda b: "?done=" in b.current_url)
    page = browser.find_element(By.TAG_NAME, "main").text
    expect("Approval queued" in page, f"the approval is confirmed as queued:\n{page}")

    # A worker applies it; the run's page shows it approved once it has.
    def approved(b):
        b.refresh()
        return b.find_element(By.CSS_SELECTOR, "main p span").text == "approved"

    WebDriverWait(browser, 60, poll_frequency=0.5).until(approved)
    status = browser.find_element(By.CSS_SELECTOR, "main p span").text
    expect(status == "approved", f"the run is approved, not {status!r}")


def glance(browser, base, held_run, shots):
    """Each page read on a laptop, then on a phone, with screenshots."""
    pages = [("dashboard", "/"), ("pipeline", "/pipelines/console-demo"), ("held-run", f"/runs/{held_run}")]
    for device, size in [("laptop", LAPTOP), ("phone", PHONE)]:
        screen(browser, size)
        for name, path in pages:
            browser.get(f"{base}{path}")
            main = browser.find_element(By.TAG_NAME, "main").text
            expect(not ISO_TIME.search(main), f"{device} {name}: times read as people write them, not {ISO_TIME.search(main)}")
            if device == "phone":
                scroll = browser.execute_script(
                    "return [document.documentElement.scrollWidth, window.innerWidth]")
                expect(scroll[0] <= scroll[1], f"phone {name}: the page scrolls sideways ({scroll[0]} > {scroll[1]} px)")
            check = CHECKS.get((device, name))
            if check:
                check(browser)
            shoot(browser, os.path.join(shots, f"{device}-{name}.png"))


def laptop_dashboard(browser):
    text = browser.find_element(By.TAG_NAME, "main").text
    expect(" EST" in text, f"the next run in the pipeline's time zone (New York):\n{text}")
    header = browser.find_element(By.CSS_SELECTOR, "table.pipelines thead")
    expect(header.is_displayed(), "a table of pipelines on a laptop")


def phone_dashboard(browser):
    header = browser.find_element(By.CSS_SELECTOR, "table.pipelines thead")
    expect(not header.is_displayed(), "a card per pipeline on a phone, not a table")
    for what, selector in [("held", "span.badge.held"), ("held count", "td.held"),
                           ("review link", "td[data-label=Actions] a"),
                           ("run now", "td[data-label=Actions] button")]:
        on_screen(browser, browser.find_element(By.CSS_SELECTOR, selector), f"phone dashboard: {what}", sideways_only=True)


def pipeline_page(browser):
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    expect(len(charts) == 2, f"the changes and durations of recent runs charted, not {len(charts)} charts")
    bars = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg rect")
    expect(len(bars) >= 3, f"a bar per run and duration, not {len(bars)}")


def laptop_held_run(browser):
    schools = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "table.per-school tbody th")]
    expect(schools and len(schools) == len(set(schools)), f"one row per school, not {schools}")
    expect(browser.find_elements(By.CSS_SELECTOR, "table.per-school .bar .fill"), "a bar for the share it would archive")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    expect(height < 2500, f"the held run's page reads at a glance, not {height} px tall")


def phone_held_run(browser):
    state = browser.find_element(By.CSS_SELECTOR, "main p span.state")
    expect(state.text == "held", f"the run's state, not {state.text!r}")
    reason = browser.find_element(By.CSS_SELECTOR, "p.reason")
    expect(reason.text.startswith("Held for approval because "), f"the reason in a sentence, not {reason.text!r}")
    approve = browser.find_element(By.XPATH, "//button[text()='Approve']")
    for what, element in [("state", state), ("reason", reason), ("Approve", approve)]:
        on_screen(browser, element, f"phone held run: {what}")


CHECKS = {
    ("laptop", "dashboard"): laptop_dashboard,
    ("phone", "dashboard"): phone_dashboard,
    ("laptop", "pipeline"): pipeline_page,
    ("phone", "pipeline"): pipeline_page,
    ("laptop", "held-run"): laptop_held_run,
    ("phone", "held-run"): phone_held_run,
}


def screen(browser, size):
    width, height, mobile = size
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})


def on_screen(browser, element, what, sideways_only=False):
    """`element` is shown inside the viewport (sideways only: between its left and right edges)."""
    box = browser.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left, r.top, r.right, r.bottom, window.innerWidth, window.innerHeight];", element)
    left, top, right, bottom, width, height = box
    expect(element.is_displayed(), f"{what} is shown")
    inside = left >= 0 and right <= width and (sideways_only or (top >= 0 and bottom <= height))
    expect(inside, f"{what} is inside the {width}x{height} viewport, not at {box[:4]}")


def shoot(browser, path):
    """The whole page, not just the screen, as a PNG."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    with open(path, "wb") as out:
        out.write(base64.b64decode(shot["data"]))


def expect(condition, what):
    if not condition:
        print(f"console check failed: {what}")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
    print("console ok")
