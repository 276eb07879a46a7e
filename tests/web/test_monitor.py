"""The web monitor in a real browser (headless Chromium) against the real
farmhandd, farmhand-worker and farmhand CLI: live updates, errors, actions with
and without a valid token, a lost worker. A screenshot of each page goes to
FARMHAND_TEST_ARTIFACTS."""

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import TOKEN, artifacts_dir

WAIT_S = 30


def wait(browser, condition, timeout=WAIT_S):
    # A row the page redraws between finding it and reading it is looked up again.
    return WebDriverWait(browser, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def open_page(browser, farm, hash_route):
    browser.get(farm.url + "/" + hash_route)
    wait(browser, lambda b: b.find_element(By.ID, "view").get_attribute("data-loaded") == "1")


def css(browser, selector):
    return browser.find_element(By.CSS_SELECTOR, selector)


def shot(browser, name):
    browser.save_screenshot(str(artifacts_dir() / (name + ".png")))


def notice_text(browser):
    el = css(browser, "#notice")
    return "" if el.get_attribute("hidden") is not None else el.text


def test_submitted_job_appears_and_succeeds_without_reload(farm, browser):
    open_page(browser, farm, "#/jobs")
    browser.execute_script("window.__sameDocument = 'yes';")
    job = farm.submit("command", "sleep", "--param", "seconds=1", "--frames", "1-4", "--name", "live-job")
    row = '#jobs tr[data-id="%d"]' % job
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, row)))
    wait(browser, lambda b: css(b, row).get_attribute("data-state") == "succeeded")
    assert browser.execute_script("return window.__sameDocument") == "yes", "the page reloaded"
    assert "live-job" in css(browser, row).text
    assert "4/4 frames" in css(browser, row).text
    shot(browser, "jobs")


def test_a_filtered_page_shows_a_job_that_comes_into_its_filter(farm, browser):
    # The page streams only the moves of jobs its filter matches (the broker
    # narrows them): a job of another project never shows, one of this project
    # shows once it runs, and leaves when it no longer does, without a reload.
    open_page(browser, farm, "#/jobs?state=running&project=showB")
    browser.execute_script("window.__sameDocument = 'yes';")
    other = farm.submit("command", "sleep", "--param", "seconds=3", "--frames", "1",
                        "--project", "showA", "--name", "not-this-show")
    job = farm.submit("command", "sleep", "--param", "seconds=3", "--frames", "1",
                      "--project", "showB", "--name", "this-show")
    row = '#jobs tr[data-id="%d"]' % job
    wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, row)))
    assert "this-show" in css(browser, row).text
    assert not browser.find_elements(By.CSS_SELECTOR, '#jobs tr[data-id="%d"]' % other)
    shot(browser, "jobs-filtered")
    wait(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, row))  # finished: no longer running
    assert browser.execute_script("return window.__sameDocument") == "yes", "the page reloaded"


def test_failing_job_shows_its_error(farm, browser):
    job = farm.submit("command", "fail", "--frames", "7", "--name", "doomed")
    open_page(browser, farm, "#/jobs/%d" % job)
    view = css(browser, "#view")
    wait(browser, lambda b: view.get_attribute("data-state") == "failed")
    # Live events draw the page's parts again (a job's last moves come after its
    # state): every text is read inside a wait, as it is at that moment.
    errors = wait(browser, lambda b: (lambda t: t if "task 0" in t else False)(
        css(b, "#job-errors").text))
    assert "exit" in errors or "1" in errors, errors
    # The task's details, by clicking its cell on the grid.
    grid = css(browser, "#task-grid")
    browser.execute_script(
        "const c = arguments[0]; const r = c.getBoundingClientRect();"
        "c.dispatchEvent(new MouseEvent('click', {clientX: r.left + 2, clientY: r.top + 2, bubbles: true}));",
        grid)
    wait(browser, EC.presence_of_element_located((By.ID, "task-panel")))
    panel = wait(browser, lambda b: (lambda t: t if "Task 0" in t else False)(
        css(b, "#task-panel").text))
    assert "Task 0" in panel and "dead" in panel, panel
    # Its attempts with their logs (GET /api/v1/jobs/ID/tasks/0/logs): what the
    # command printed, and how each attempt ended.
    # (The panel is drawn again when a live event names its task: read it as it is now.)
    logs = wait(browser, lambda b: (lambda t: t if "render exploded" in t else False)(
        css(b, "#task-logs").text))
    assert "attempt 1" in logs and "exit 1" in logs, logs
    browser.execute_script("arguments[0].scrollIntoView()", css(browser, "#task-logs"))
    shot(browser, "job-failed")


def confirm_and_give_token(browser, token):
    wait(browser, EC.visibility_of_element_located((By.ID, "confirm-ok"))).click()
    field = wait(browser, EC.visibility_of_element_located((By.ID, "token-input")))
    field.send_keys(token)
    css(browser, "#token-ok").click()


def test_cancel_needs_a_valid_token(farm, browser):
    job = farm.submit("command", "sleep", "--param", "seconds=60", "--frames", "1-2", "--name", "to-cancel")
    open_page(browser, farm, "#/jobs/%d" % job)
    view = css(browser, "#view")
    wait(browser, lambda b: view.get_attribute("data-state") in ("queued", "running"))
    browser.execute_script("sessionStorage.clear()")

    # Backing out of the question sends nothing.
    css(browser, "#action-cancel").click()
    wait(browser, EC.visibility_of_element_located((By.CSS_SELECTOR, "#confirm-dialog button[value=cancel]"))).click()
    assert not css(browser, "#token-dialog").is_displayed()

    # A token the broker does not know: refused, and the page says so.
    css(browser, "#action-cancel").click()
    confirm_and_give_token(browser, "not-a-token-the-broker-knows")
    wait(browser, lambda b: "refused" in notice_text(b))
    assert "cancel refused" in notice_text(browser)
    shot(browser, "job-cancel-refused")
    assert view.get_attribute("data-state") in ("queued", "running")
    assert browser.execute_script("return sessionStorage.getItem('farmhand.token')") is None

    # The right one: cancelled.
    css(browser, "#action-cancel").click()
    confirm_and_give_token(browser, TOKEN)
    wait(browser, lambda b: view.get_attribute("data-state") == "cancelled")
    assert "cancelled" in notice_text(browser)
    shot(browser, "job-cancelled")


def test_the_api_refuses_an_action_without_a_token(farm, browser):
    """What the page sends when it has no token: the API's 401 line comes back."""
    job = farm.submit("command", "sleep", "--param", "seconds=60", "--frames", "1", "--name", "no-token")
    open_page(browser, farm, "#/jobs/%d" % job)
    status, error = browser.execute_async_script(
        "const done = arguments[1];"
        "fetch('/api/v1/jobs/' + arguments[0] + '/cancel', {method: 'POST'})"
        ".then(async (r) => done([r.status, (await r.json()).error]));", job)
    assert status == 401 and error, (status, error)
    farm.cli("cancel", str(job))


def test_killed_worker_shows_as_lost(farm, browser):
    worker = farm.start_worker("doomed-worker")
    open_page(browser, farm, "#/workers")
    row = '#workers tr[data-name="doomed-worker"]'
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row)
         and css(b, row).get_attribute("data-alive") == "true")
    worker.kill()  # SIGKILL: no goodbye, the broker notices the silence
    worker.wait()
    wait(browser, lambda b: css(b, row).get_attribute("data-alive") == "false")
    assert "lost" in css(browser, row).text
    shot(browser, "workers")


MAX_ID = "18446744073709551615"  # newer_than it: no other job's moves


def watch_streams(browser):
    """Records the live streams each page opens, from the next document on
    (EventSource wrapped before the page's scripts run)."""
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.__streams = [];
        const Original = window.EventSource;
        window.EventSource = class extends Original {
          constructor(url, init) { super(url, init); window.__streams.push(String(url)); }
        };"""})
    browser.get("about:blank")  # a new document: a hash change alone keeps the old one


def stream_asks(browser, *parts, jobs_include=()):
    """Waits until the page's newest stream asks for every one of `parts`
    (name, value), and lists every job of `jobs_include`."""
    from urllib.parse import parse_qsl, urlsplit

    def asks(b):
        url = b.execute_script("return (window.__streams || []).slice(-1)[0]") or ""
        query = dict(parse_qsl(urlsplit(url).query))
        listed = set(query.get("jobs", "").split(","))
        return all(query.get(k) == v for k, v in parts) and all(str(j) in listed for j in jobs_include)
    wait(browser, asks)


def test_the_workers_page_follows_the_farm_without_any_jobs_events(farm, browser):
    watch_streams(browser)
    open_page(browser, farm, "#/workers")
    # A busy farm moves thousands of jobs a second: the workers page asks for
    # none of them, and reloads on the farm events that end each publish.
    stream_asks(browser, ("jobs", "none"))
    job = farm.submit("command", "sleep", "--param", "seconds=60", "--frames", "1", "--name", "on-a-worker")
    link = '#workers a[href="#/jobs/%d"]' % job
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, link))
    shot(browser, "workers-running")
    farm.cli("cancel", str(job))
    wait(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, link))
    # A job's page asks for that job's changes and task indices, and no other job's.
    open_page(browser, farm, "#/jobs/%d" % job)
    stream_asks(browser, ("jobs", str(job)), ("tasks", str(job)), ("newer_than", MAX_ID))
    # The jobs page, for the moves of jobs newer than its top row.
    open_page(browser, farm, "#/jobs")
    stream_asks(browser, ("newer_than", str(job)))


def data_dir():
    # ../shared/data beside the source tree (this file is ROOT/tests/web/).
    from pathlib import Path
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "openexr-images"


def test_a_publish_shows_its_thumbnail_inline(farm, browser):
    sequence = data_dir() / "Beachball" / "singlepart.####.exr"
    assert (data_dir() / "Beachball" / "singlepart.0001.exr").exists(), "test data missing: %s" % data_dir()
    watch_streams(browser)
    open_page(browser, farm, "#/events")
    # The page open before the publish: its event, its jobs and their end come
    # live, from a stream of the shown jobs' changes and no other job's.
    farm.cli("publish", str(sequence))
    row = wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#events tbody tr[data-event]")))
    jobs = {a.get_attribute("href").rsplit("/", 1)[1] for a in row.find_elements(By.CSS_SELECTOR, 'a[href*="#/jobs/"]')}
    assert jobs, row.text
    stream_asks(browser, ("newer_than", MAX_ID), jobs_include=jobs)
    img = wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#events img.thumb")))
    # Decoded by the browser: a real image, 128 wide as the rule asked.
    wait(browser, lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 128)
    height = browser.execute_script("return arguments[0].naturalHeight", img)
    assert 90 <= height <= 110, height  # 2048x1556 displayed: about 97 rows
    shot(browser, "events-thumbnail")


def test_events_and_limits_pages(farm, browser):
    open_page(browser, farm, "#/events")
    assert css(browser, "#events")
    shot(browser, "events")
    open_page(browser, farm, "#/limits")
    assert css(browser, "#limits")
    shot(browser, "limits")


def test_page_after_page_never_waits_for_a_connection(farm, browser):
    # Each page opens the live stream. Left open when the page went away, the
    # browser held the stream's connection for about a minute, and by the
    # seventh page all six of its connections to the broker were held: that
    # page waited for one. Every page must load at once, however many came
    # before.
    browser.set_page_load_timeout(WAIT_S)  # a stalled document fails, not waits
    try:
        for visit in range(10):
            browser.get("about:blank")
            open_page(browser, farm, "#/jobs" if visit % 2 else "#/workers")
    finally:
        browser.set_page_load_timeout(300)
