"""The monitor's wrangler controls in a real browser (headless Chromium) against
the real farmhandd, farmhand-worker and farmhand CLI: a job's set form, a task's
actions, requeue, worker drain/disable/enable, a limit's capacity, and actions
refused for a bad token. Each checks the effect through the API or the CLI, not
only on the page. A screenshot of each changed page goes to
FARMHAND_TEST_ARTIFACTS."""

import json
import urllib.request

from selenium.common.exceptions import (ElementNotInteractableException, NoSuchElementException,
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import TOKEN
from test_monitor import WAIT_S, css, notice_text, open_page, shot

# Rows are redrawn from the API every few seconds: an element found a moment
# ago may be gone, or being moved into the new rows (a field being edited is
# kept), so conditions look again instead of failing; one that never comes
# back still fails, by timeout.
REDRAWN = (NoSuchElementException, StaleElementReferenceException, ElementNotInteractableException)


def wait(browser, condition, timeout=WAIT_S):
    try:
        return WebDriverWait(browser, timeout, ignored_exceptions=REDRAWN).until(condition)
    except TimeoutException:
        # What the page showed, for the failure's report.
        shot(browser, "timeout")
        raise TimeoutException("waited %g s; page %s, notice %r" % (
            timeout, browser.current_url, browser.execute_script(
                "const n = document.getElementById('notice'); return n.hidden ? '' : n.textContent")))


def click(browser, selector):
    """Clicks what the selector names now, looking again if it was redrawn."""
    def clicked(b):
        el = css(b, selector)
        if not el.is_enabled():
            return False
        el.click()
        return True
    wait(browser, clicked)


def now(browser, selector, fn):
    """fn(the element the selector names), looking again if it was redrawn meanwhile."""
    return wait(browser, lambda b: [fn(css(b, selector))])[0]


def press(browser, key):
    """A key to whatever has the focus, as a keyboard sends it: not to an element
    found a moment ago, which a redraw may have replaced (the page moves the
    focus to the new row's control)."""
    ActionChains(browser).send_keys(key).perform()


def api(farm, path):
    with urllib.request.urlopen(farm.url + "/api/v1/" + path, timeout=WAIT_S) as reply:
        body = json.load(reply)
    assert body["ok"], body
    return body


def job_of(farm, job):
    return api(farm, "jobs/%d" % job)["status"]["job"]


def task_of(farm, job, index):
    return api(farm, "jobs/%d?tasks_offset=%d&tasks_limit=1" % (job, index))["status"]["tasks"][0]


def give_token(browser, token=TOKEN):
    """As if given in the token dialog earlier in this tab."""
    browser.execute_script("sessionStorage.setItem('farmhand.token', arguments[0])", token)


def token_in_tab(browser):
    return browser.execute_script("return sessionStorage.getItem('farmhand.token')")


def confirm(browser):
    wait(browser, EC.visibility_of_element_located((By.ID, "confirm-ok"))).click()
    wait(browser, EC.invisibility_of_element_located((By.ID, "confirm-dialog")))


def queued_job(farm, name):
    """A job that stays queued: its pool has no worker."""
    return farm.submit("command", "sleep", "--param", "seconds=60", "--frames", "1-2",
                       "--pool", "nowhere", "--name", name)


def type_into(browser, selector, text):
    def typed(field):
        field.clear()
        field.send_keys(text)
    now(browser, selector, typed)


def test_set_priority_max_running_and_pool_of_a_queued_job(farm, browser):
    job = queued_job(farm, "to-set")
    open_page(browser, farm, "#/jobs/%d" % job)
    give_token(browser)
    wait(browser, lambda b: css(b, "#set-priority").get_attribute("value") == "0")
    assert css(browser, "#set-pool").get_attribute("value") == "nowhere"
    type_into(browser, "#set-priority", "80")
    type_into(browser, "#set-max_running", "3")
    click(browser, "#set-apply")
    # The summary follows the change.
    wait(browser, lambda b: css(b, '#job-summary dd[data-field="priority"]').text == "80")
    wait(browser, lambda b: "max running 3" in css(b, '#job-summary dd[data-field="limits"]').text)
    assert "set: job %d" % job in notice_text(browser)
    shot(browser, "job-set")
    got = job_of(farm, job)
    assert got["priority"] == 80 and got["max_running"] == 3, got
    assert got["pool"] == "nowhere", "a field not edited was sent: %r" % got["pool"]
    status = json.loads(farm.cli("status", str(job), "--json").stdout)
    assert status["job"]["priority"] == 80, status

    # Pool emptied: any worker; the job runs.
    css(browser, "#set-pool").send_keys(Keys.END, Keys.BACKSPACE * 10, Keys.ENTER)  # by keyboard
    wait(browser, lambda b: css(b, '#job-summary dd[data-field="pool"]').text == "any")
    assert job_of(farm, job)["pool"] == ""
    farm.cli("cancel", str(job))


def give_token_in_dialog(browser, token):
    field = wait(browser, EC.visibility_of_element_located((By.ID, "token-input")))
    field.send_keys(token)
    css(browser, "#token-ok").click()


def test_an_action_with_a_bad_token_is_refused_and_changes_nothing(farm, browser):
    job = queued_job(farm, "bad-token")
    open_page(browser, farm, "#/jobs/%d" % job)
    browser.execute_script("sessionStorage.clear()")
    wait(browser, lambda b: css(b, "#set-priority").get_attribute("value") == "0")
    type_into(browser, "#set-priority", "55")
    click(browser, "#set-apply")
    give_token_in_dialog(browser, "not-a-token-the-broker-knows")
    wait(browser, lambda b: "set refused" in notice_text(b))
    assert "token" in notice_text(browser), notice_text(browser)
    assert token_in_tab(browser) is None, "a refused token is kept"
    assert job_of(farm, job)["priority"] == 0
    shot(browser, "job-set-refused")

    # The page asks again; backing out sends nothing.
    click(browser, "#set-apply")
    wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, "#token-dialog button[value=cancel]"))).click()
    assert job_of(farm, job)["priority"] == 0

    # A worker control with a bad token: refused, the worker unchanged.
    open_page(browser, farm, "#/workers")
    click(browser, '#workers tr[data-name="local-1"] button[data-verb="drain"]')
    wait(browser, EC.visibility_of_element_located((By.ID, "prompt-ok"))).click()
    give_token_in_dialog(browser, "also-not-a-token")
    wait(browser, lambda b: "drain refused" in notice_text(b))
    workers = api(farm, "workers")["workers"]["workers"]
    assert [w["control"] for w in workers if w["name"] == "local-1"] == ["enabled"], workers

    # A stale token does not stop the pages reading while reads are open (the
    # broker ignores it there); the next action refuses and drops it.
    give_token(browser, "a-token-removed-from-the-file")
    browser.refresh()
    wait(browser, lambda b: b.find_element(By.ID, "view").get_attribute("data-loaded") == "1")
    assert notice_text(browser) == ""
    farm.cli("cancel", str(job))


def test_drain_and_enable_a_worker_by_keyboard(farm, browser):
    farm.start_worker("ctl-worker")
    open_page(browser, farm, "#/workers")
    browser.execute_script("sessionStorage.clear()")
    row = '#workers tr[data-name="ctl-worker"]'
    wait(browser, lambda b: css(b, row).get_attribute("data-alive") == "true")
    assert not now(browser, row + ' button[data-verb="enable"]', lambda el: el.is_enabled())

    # Enter on the button, the reason and Enter, the token and Enter.
    now(browser, row + ' button[data-verb="drain"]', lambda el: el.send_keys(Keys.ENTER))
    reason = wait(browser, EC.visibility_of_element_located((By.ID, "prompt-input")))
    assert "Drain worker ctl-worker?" in css(browser, "#prompt-text").text
    reason.send_keys("disk swap", Keys.ENTER)
    token = wait(browser, EC.visibility_of_element_located((By.ID, "token-input")))
    token.send_keys(TOKEN, Keys.ENTER)
    wait(browser, lambda b: css(b, row).get_attribute("data-control") == "draining")
    wait(browser, lambda b: "disk swap" in css(b, row).text)
    assert "draining" in now(browser, row, lambda el: el.text)
    shot(browser, "workers-drained")
    workers = {w["name"]: w for w in api(farm, "workers")["workers"]["workers"]}
    assert workers["ctl-worker"]["control"] == "draining", workers["ctl-worker"]
    assert workers["ctl-worker"]["control_reason"] == "disk swap"

    # The focus stays in the row, on the next button it offers (drain is
    # disabled now); Tab reaches enable.
    wait(browser, lambda b: b.switch_to.active_element.get_attribute("data-key") == "disable:ctl-worker")
    press(browser, Keys.TAB)
    wait(browser, lambda b: b.switch_to.active_element.get_attribute("data-key") == "enable:ctl-worker")
    # Enable asks nothing; the token is kept for the tab.
    press(browser, Keys.ENTER)
    wait(browser, lambda b: css(b, row).get_attribute("data-control") == "enabled")
    assert "disk swap" not in now(browser, row, lambda el: el.text)
    workers = {w["name"]: w for w in api(farm, "workers")["workers"]["workers"]}
    assert workers["ctl-worker"]["control"] == "enabled"

    # Disable, backed out of: nothing changes.
    click(browser, row + ' button[data-verb="disable"]')
    wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, "#prompt-dialog button[value=cancel]"))).click()
    workers = {w["name"]: w for w in api(farm, "workers")["workers"]["workers"]}
    assert workers["ctl-worker"]["control"] == "enabled"
    # Disable, confirmed without a reason.
    click(browser, row + ' button[data-verb="disable"]')
    wait(browser, EC.visibility_of_element_located((By.ID, "prompt-ok"))).click()
    wait(browser, lambda b: css(b, row).get_attribute("data-control") == "disabled")
    farm.cli("worker", "enable", "ctl-worker")
    wait(browser, lambda b: css(b, row).get_attribute("data-control") == "enabled")


def test_task_actions_skip_a_waiting_task_and_kill_a_running_one(farm, browser):
    job = farm.submit("command", "sleep", "--param", "seconds=60", "--frames", "1-3",
                      "--max-running", "1", "--name", "to-skip")
    open_page(browser, farm, "#/jobs/%d" % job)
    give_token(browser)
    wait(browser, lambda b: b.find_element(By.ID, "view").get_attribute("data-state") == "running")

    # Task 2 by its number (the grid is a canvas: the form is the keyboard's way).
    type_into(browser, "#task-pick", "2")
    css(browser, "#task-pick").send_keys(Keys.ENTER)
    panel = "#task-panel"
    wait(browser, lambda b: css(b, panel).get_attribute("data-index") == "2")
    assert now(browser, panel, lambda el: el.get_attribute("data-state")) in ("queued", "waiting")
    assert not now(browser, "#task-kill", lambda el: el.is_enabled()), "kill offered for a task that does not run"
    assert not now(browser, "#task-retry", lambda el: el.is_enabled())

    # Skip asks first; backing out changes nothing.
    click(browser, "#task-skip")
    wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, "#confirm-dialog button[value=cancel]"))).click()
    assert task_of(farm, job, 2)["state"] in ("TASK_QUEUED", "TASK_WAITING")
    click(browser, "#task-skip")
    assert "Skip task 2 of job %d?" % job in wait(browser, EC.visibility_of_element_located((By.ID, "confirm-text"))).text
    confirm(browser)
    wait(browser, lambda b: css(b, panel).get_attribute("data-state") == "succeeded")
    assert task_of(farm, job, 2)["state"] == "TASK_SUCCEEDED"
    assert task_of(farm, job, 1)["state"] in ("TASK_QUEUED", "TASK_WAITING"), "skip reached another task"
    assert "skip: task 2" in notice_text(browser)
    browser.execute_script("arguments[0].scrollIntoView()", css(browser, "#task-pick-form"))
    shot(browser, "job-task-skipped")

    # Task 0 runs: kill as failed stops it and counts the attempt.
    type_into(browser, "#task-pick", "0")
    click(browser, "#task-pick-show")
    wait(browser, lambda b: css(b, panel).get_attribute("data-index") == "0"
         and css(b, panel).get_attribute("data-state") == "running")
    click(browser, "#task-kill-as-failed")
    confirm(browser)
    wait(browser, lambda b: "kill as failed: task 0" in notice_text(b))
    # Its one attempt (default_max_attempts: 1) failed: dead.
    wait(browser, lambda b: css(b, panel).get_attribute("data-state") == "dead")
    assert "killed by farmhand kill" in task_of(farm, job, 0).get("error", "")
    farm.cli("cancel", str(job))


def test_requeue_a_finished_job_asks_first(farm, browser):
    job = farm.submit("command", "true", "--frames", "1", "--name", "to-requeue")
    open_page(browser, farm, "#/jobs/%d" % job)
    give_token(browser)
    view = css(browser, "#view")
    wait(browser, lambda b: view.get_attribute("data-state") == "succeeded")
    assert not now(browser, "#action-pause", lambda el: el.is_enabled())
    click(browser, "#action-requeue")
    assert "Requeue job %d?" % job in wait(browser, EC.visibility_of_element_located((By.ID, "confirm-text"))).text
    confirm(browser)
    wait(browser, lambda b: int(task_of(farm, job, 0).get("attempts", 0)) == 2)
    wait(browser, lambda b: view.get_attribute("data-state") == "succeeded")
    assert "requeue: job %d" % job in notice_text(browser)


def test_set_a_limit_capacity(farm, browser):
    farm.cli("limit", "set", "lic", "5")
    open_page(browser, farm, "#/limits")
    give_token(browser)
    row = '#limits tr[data-name="lic"]'
    wait(browser, lambda b: css(b, row).get_attribute("data-capacity") == "5")
    type_into(browser, row + " input.capacity", "2")
    click(browser, row + " button")
    wait(browser, lambda b: css(b, row).get_attribute("data-capacity") == "2")
    limits = {l["name"]: l for l in api(farm, "limits")["limits"]["limits"]}
    assert limits["lic"]["capacity"] == 2, limits
    shot(browser, "limits-set")

    # To 0 asks first: backing out keeps 2.
    type_into(browser, row + " input.capacity", "0")
    click(browser, row + " button")
    assert "Set limit lic to 0?" in wait(browser, EC.visibility_of_element_located((By.ID, "confirm-text"))).text
    click(browser, "#confirm-dialog button[value=cancel]")
    assert {l["name"]: l for l in api(farm, "limits")["limits"]["limits"]}["lic"]["capacity"] == 2
    click(browser, row + " button")
    confirm(browser)
    wait(browser, lambda b: css(b, row).get_attribute("data-capacity") == "0")
    assert {l["name"]: l for l in api(farm, "limits")["limits"]["limits"]}["lic"]["capacity"] == 0

    # A new limit by the form.
    type_into(browser, "#limit-new-name", "render-lic")
    type_into(browser, "#limit-new-capacity", "7")
    css(browser, "#limit-new-capacity").send_keys(Keys.ENTER)
    wait(browser, lambda b: css(b, '#limits tr[data-name="render-lic"]').get_attribute("data-capacity") == "7")
    assert {l["name"]: l for l in api(farm, "limits")["limits"]["limits"]}["render-lic"]["capacity"] == 7
