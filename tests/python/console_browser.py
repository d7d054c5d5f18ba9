"""The web console in a real browser: headless Chromium (Debian's package) driven through
WebDriver (Debian's chromium-driver) by Selenium, for tests/tests/console_browser.rs.

Usage: console_browser.py '<json>' with keys (or, with "mode": "replay", the keys
auditor, ca, out and "recorded": text shown in a recorded SSH terminal, for replay())
  ca            the cluster CA (PEM) the console's certificate chains to
  approver      console URL bob signs in to (approvers)
  engineer      console URL eve signs in to (engineers)
  auditor       console URL dana signs in to (auditor)
  held, own     markers of alice's held DELETE (spawned by the test once this script
                says `STEP inbox-open`) and of bob's own held DELETE
  out           directory for the screenshots

Talks to the test on stdout: `STEP inbox-open` (spawn alice's DELETE now), `STEP approved`
(it should finish now), and last one JSON line with what it saw. Any failed check ends
the script with a message on stderr and exit status 1.

Trust: the browser trusts the cluster's CA through a throwaway NSS database
($HOME/.pki/nssdb of a temporary HOME, the CA imported with certutil) rather than
--ignore-certificate-errors, so the console's certificate is really verified (name, chain,
validity), as an operator's browser would verify it.
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

WIDTHS = (1280, 800)
HEIGHT = 900
WAIT = 30

cfg = json.loads(sys.argv[1])
shots = []
seen = {}


def step(name):
    print(f"STEP {name}", flush=True)


def fail(message, driver=None):
    if driver is not None:
        try:
            shot(driver, "failure")
            message += f"\n--- page {driver.current_url} ---\n{driver.find_element(By.TAG_NAME, 'body').text}"
        except WebDriverException:
            pass
    print(f"console_browser: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(ok, message, driver=None):
    if not ok:
        fail(message, driver)


def trusting_home(ca):
    """A temporary HOME whose NSS database (Chromium's trust store on Linux) trusts `ca`."""
    home = tempfile.mkdtemp(prefix="portcullis-chromium-")
    db = os.path.join(home, ".pki", "nssdb")
    os.makedirs(db)
    subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", "portcullis test CA", "-t", "C,,", "-i", ca], check=True)
    return home


HOME = trusting_home(cfg["ca"])
# The NSS database and the browser profiles go with the script.
atexit.register(shutil.rmtree, HOME, ignore_errors=True)


def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="profile-", dir=HOME)
    for arg in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--password-store=basic",
        f"--user-data-dir={profile}",
        f"--window-size={WIDTHS[0]},{HEIGHT}",
    ):
        opts.add_argument(arg)
    if os.geteuid() == 0:
        # Chromium's sandbox refuses to run as root (CI runs as root).
        opts.add_argument("--no-sandbox")
    service = Service(executable_path="/usr/bin/chromedriver", env={**os.environ, "HOME": HOME})
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(WAIT)
    return driver


def wait(driver, what, cond, timeout=WAIT):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: cond(d))
    except WebDriverException as e:
        fail(f"timed out waiting for {what}: {e.__class__.__name__}", driver)


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def shot(driver, name):
    path = os.path.join(cfg["out"], f"{name}.png")
    driver.save_screenshot(path)
    shots.append(path)
    return path


def sign_in(driver, console, sub, groups):
    """Through the dev issuer's sign-in form, as a person would; ends on the inbox URL."""
    driver.get(console + "/approvals")
    field = wait(driver, "the issuer's sign-in form", lambda d: d.find_elements(By.ID, "sub"))[0]
    check("/authorize" in driver.current_url, f"not the provider's form: {driver.current_url}", driver)
    field.send_keys(sub)
    driver.find_element(By.ID, "groups").send_keys(groups)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(driver, f"{sub} back on the console", lambda d: d.current_url == console + "/approvals")
    wait(driver, "the page", lambda d: d.find_elements(By.TAG_NAME, "h1"))
    check(f"Signed in as {sub}" in text(driver), f"{sub} is not shown as signed in", driver)


def at_each_width(driver, name, load):
    """`name` at every width: loaded, no horizontal scrollbar, a screenshot."""
    for width in WIDTHS:
        driver.set_window_size(width, HEIGHT)
        load()
        inner = driver.execute_script("return window.innerWidth")
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        check(inner <= width, f"{name} at {width}: viewport {inner} px", driver)
        check(scroll <= inner, f"{name} at {width} px scrolls sideways: scrollWidth {scroll} > innerWidth {inner}", driver)
        title = driver.title
        check(" · Portcullis node " in title, f"{name}: the page does not name itself: {title!r}", driver)
        seen.setdefault("widths", {})[f"{name}-{width}"] = {"inner": inner, "scroll": scroll, "title": title}
        shot(driver, f"{name}-{width}")
    driver.set_window_size(WIDTHS[0], HEIGHT)


def approval_item(driver, marker):
    items = driver.find_elements(
        By.XPATH, f"//li[contains(@class,'approval')][.//pre[contains(., '{marker}')]]"
    )
    return items[0] if items else None


def listed(driver, marker, what, reload=True):
    """Wait until the approval `marker` is on the page, reloading every 3 s unless
    `reload` is off (then only the page's live updates can bring it); returns the reloads."""
    started, loaded, reloads = time.time(), time.time(), 0
    while approval_item(driver, marker) is None:
        check(time.time() - started < 60, f"{what} never appeared in the inbox", driver)
        if reload and time.time() - loaded > 3:
            driver.refresh()
            loaded, reloads = time.time(), reloads + 1
        time.sleep(0.2)
    return reloads


def approver():
    driver = browser()
    console = cfg["approver"]
    sign_in(driver, console, "bob", "approvers")
    check(driver.title.startswith("Approvals · Portcullis node"), f"title {driver.title!r}", driver)
    # bob's own DELETE (held before he signed in) is listed, marked as his.
    listed(driver, cfg["own"], "bob's own held DELETE")
    step("inbox-open")
    # alice's DELETE, held on another node after the page was open: it appears by itself,
    # without a reload (the inbox's live updates).
    started = time.time()
    seen["appeared_after_reloads"] = listed(driver, cfg["held"], "alice's DELETE held on node 2", reload=False)
    seen["appeared_after_s"] = round(time.time() - started, 1)
    at_each_width(driver, "inbox", driver.refresh)
    item = approval_item(driver, cfg["held"])
    check(item is not None, "alice's DELETE left the inbox before anyone decided", driver)
    for fact in ("alice", "demo", "writes to demo need a second pair of eyes"):
        check(fact in item.text, f"the held DELETE does not show {fact!r}: {item.text}", driver)
    check("node 2" in item.text, f"the DELETE was held on node 2: {item.text}", driver)

    # Keyboard only: Tab to the reason field of alice's DELETE, type, Tab to Approve, Enter.
    reason = item.find_element(By.CSS_SELECTOR, "input[name=reason]")
    approve = item.find_element(By.CSS_SELECTOR, "button.approve")
    driver.execute_script("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0)")
    tabs = 0
    while driver.switch_to.active_element != reason:
        tabs += 1
        check(tabs <= 100, "the reason field of the held DELETE is not reachable with Tab", driver)
        ActionChains(driver).send_keys(Keys.TAB).perform()
    label = driver.execute_script(
        "const e = arguments[0]; return e.labels && e.labels.length ? e.labels[0].textContent : ''", reason
    )
    check(label.strip() == "Reason", f"the reason field's label is {label!r}", driver)
    ActionChains(driver).send_keys("checked in the browser").send_keys(Keys.TAB).perform()
    check(driver.switch_to.active_element == approve, "Tab after the reason does not reach Approve", driver)
    name = approve.accessible_name
    check(name.strip() == "Approve", f"the approve button's accessible name is {name!r}", driver)
    seen["tabs_to_reason"] = tabs
    seen["approve_accessible_name"] = name
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    wait(driver, "the decision's outcome", lambda d: "outcome=approved" in d.current_url)
    check("Approved " in text(driver), "no 'Approved' notice after approving", driver)
    check(approval_item(driver, cfg["held"]) is None, "the approved DELETE is still listed", driver)
    shot(driver, "inbox-approved-1280")
    step("approved")

    # bob's own request: the page marks it, and the node refuses his approval.
    item = approval_item(driver, cfg["own"])
    check(item is not None, "bob's own DELETE is not listed", driver)
    check("This is your own request" in item.text, f"bob's own DELETE is not marked: {item.text}", driver)
    item.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait(driver, "the refusal page", lambda d: "may not decide their own request" in text(d))
    seen["own_refusal"] = driver.find_element(By.TAG_NAME, "main").text
    shot(driver, "refused-own-1280")
    driver.quit()


def engineer():
    driver = browser()
    sign_in(driver, cfg["engineer"], "eve", "engineers")
    body = text(driver)
    check("Permission denied" in body and "needs the approver role" in body, f"eve was not refused: {body}", driver)
    check("approvers" in body, "the refusal does not name the approver groups", driver)
    seen["engineer_refusal"] = driver.find_element(By.TAG_NAME, "main").text
    at_each_width(driver, "forbidden", driver.refresh)
    driver.quit()


def auditor():
    driver = browser()
    console = cfg["auditor"]
    sign_in(driver, console, "dana", "auditor")
    at_each_width(driver, "cluster", lambda: driver.get(console + "/cluster"))
    check("Members, each asked directly" in driver.page_source, "the cluster page has no member table", driver)
    at_each_width(driver, "policies", lambda: driver.get(console + "/policies"))

    def tested():
        driver.get(console + "/policies")
        driver.find_element(By.ID, "t-groups").clear()
        driver.find_element(By.ID, "t-groups").send_keys("engineers")
        driver.find_element(By.ID, "t-input").send_keys("DELETE FROM customers WHERE id = 1")
        driver.find_element(By.CSS_SELECTOR, "form.tester button[type=submit]").click()
        wait(driver, "the tester's decision", lambda d: d.find_elements(By.CSS_SELECTOR, ".decision"))

    at_each_width(driver, "policies-tested", tested)
    decision = driver.find_element(By.CSS_SELECTOR, ".decision").text
    check(decision == "review", f"the tester says {decision!r} for a DELETE on demo", driver)
    driver.quit()


def replay():
    """dana (auditor) finds the SSH session, opens its page, and the player replays it."""
    driver = browser()
    console = cfg["auditor"]
    sign_in(driver, console, "dana", "auditor")
    at_each_width(driver, "sessions", lambda: driver.get(console + "/sessions?door=ssh"))
    links = wait(driver, "an SSH session in the results", lambda d: d.find_elements(By.CSS_SELECTOR, "tbody a"))
    url = links[0].get_attribute("href")

    def played():
        driver.get(url)
        # The player mounts (its script compiled its WebAssembly under the page's CSP)...
        player = wait(driver, "the asciinema player", lambda d: d.find_elements(By.CSS_SELECTOR, ".ap-player"))[0]
        start = driver.find_elements(By.CSS_SELECTOR, ".ap-overlay-start")
        # ... and plays when started, as a person starts it: its start overlay, or Space.
        if start:
            start[0].click()
        else:
            player.send_keys(Keys.SPACE)
        wait(
            driver,
            f"{cfg['recorded']!r} in the replayed terminal",
            lambda d: any(cfg["recorded"] in t.text for t in d.find_elements(By.CSS_SELECTOR, ".ap-term")),
        )
        errors = driver.find_elements(By.CSS_SELECTOR, ".ap-overlay-error")
        check(not errors, "the player shows an error", driver)

    at_each_width(driver, "session", played)
    seen["terminal"] = driver.find_element(By.CSS_SELECTOR, ".ap-term").text
    check("123-45-6789" not in seen["terminal"], "the replay shows an unmasked SSN", driver)
    check("Terminal 0, replayed" in text(driver) or "replayed" in text(driver), "the terminal is not named", driver)
    driver.quit()


os.makedirs(cfg["out"], exist_ok=True)
if cfg.get("mode") == "replay":
    replay()
else:
    approver()
    engineer()
    auditor()
print(json.dumps({"screenshots": shots, "seen": seen}), flush=True)
