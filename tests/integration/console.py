"""Drives the admin console in headless Chromium (Debian's chromium and chromedriver): a page
asked for without a session leads to sign-in; the admin signs in, finds the held run from the
dashboard, reads what its plan would change, approves it, and sees it applied by a worker.

    python3 console.py BASE_URL ADMIN_TOKEN HELD_RUN

Exits 0 when every step holds; otherwise prints what did not and exits 1.
"""

import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from chromium import chromium


def main(base, token, held_run):
    with chromium() as browser:
        drive(browser, base, token, held_run)


def drive(browser, base, token, held_run):
    browser.implicitly_wait(5)
    # Without a session, a run's page leads to sign-in, and back to the run's page after it.
    browser.get(f"{base}/runs/{held_run}")
    expect("/login?next=" in browser.current_url, f"sent to sign in, not {browser.current_url}")

    browser.find_element(By.NAME, "user").send_keys("Alice Admin")
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.TAG_NAME, "form").submit()
    WebDriverWait(browser, 30).until(lambda b: "/login" not in b.current_url)
    expect(f"/runs/{held_run}?signed_in=1" in browser.current_url, f"the run's page, not {browser.current_url}")
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


def expect(condition, what):
    if not condition:
        print(f"console check failed: {what}")
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
    print("console ok")
