"""The log panels in headless Chromium against the portal over real HTTP: an application's logs from the real
OpenSearch node, followed live and paged back, and a running build's console followed until the build ends;
no page reload, and a browser console free of errors (the Content-Security-Policy allows no inline script)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from integrations.log_search import LogFields
from portal.extensions import db
from portal.models import Build, BuildLogChunk, BuildState, Team
from portal.services.naming import ResourceNames
from tests import browser_support
from tests.browser_support import sign_up, still_attached, wait
from tests.factories import ApplicationFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.browser

browser = browser_support.browser  # the shared headless Chromium fixture


@pytest.fixture
def index():
    return f"fluent-bit-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app_overrides(request, index):
    if "search_node" in request.fixturenames:
        node = request.getfixturevalue("search_node")
        return {"logs": "opensearch", "logs_url": node.url, "logs_index": f"{index}*"}
    return {}


@pytest.fixture
def application(app):
    UserFactory(username="root", is_admin=True)  # the portal is in use: the one signing up is not its first user
    return ApplicationFactory(project=ProjectFactory(name="shop", team=Team.by_name("dev")), name="cart")


def no_errors(driver) -> None:
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], "errors in the browser console:\n" + "\n".join(e["message"] for e in severe)


def test_a_running_build_s_console_is_followed_line_by_line_until_it_ends(application, live_server, browser):
    build = Build(application_id=application.id, number=1, commit_sha="c" * 40, state=BuildState.RUNNING)
    db.session.add(build)
    db.session.commit()

    def write(text: str) -> None:
        db.session.add(BuildLogChunk(build_id=build.id, offset=build.log_size, text=text))
        build.log_size += len(text)
        db.session.commit()

    write("==> Build\nSTEP 1/4: FROM python\n")
    driver = browser
    sign_up(driver, live_server, "dana")
    driver.get(f"{live_server}/t/dev/shop/cart/builds/1")
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "L2"), "STEP 1/4"))
    page = driver.find_element(By.TAG_NAME, "html")
    write("STEP 2/4: COPY . /app\nSTEP 3/4: RU")  # half a line: not shown until it is whole
    wait(driver).until(EC.presence_of_element_located((By.ID, "L3")))
    assert not driver.find_elements(By.ID, "L4")
    write("N pip install\n==> Push\n")
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "L4"), "STEP 3/4: RUN pip install"))
    build.state = BuildState.SUCCEEDED
    db.session.commit()
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "console-tail"), "The build is over"))
    assert [li.get_attribute("id") for li in driver.find_elements(By.CSS_SELECTOR, "#console-lines li")] == \
        ["L1", "L2", "L3", "L4", "L5"]
    assert still_attached(page), "following the build reloaded the page"

    # The filter swaps the panel: only the matching lines, highlighted, with their numbers.
    field = driver.find_element(By.CSS_SELECTOR, "#console-panel input[name=q]")
    field.send_keys("step", Keys.ENTER)
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#console-lines li")) == 3)
    marks = driver.find_elements(By.CSS_SELECTOR, "#console-lines mark")
    assert [m.text for m in marks] == ["STEP", "STEP", "STEP"]
    assert still_attached(page)
    no_errors(driver)


def test_an_application_s_logs_are_followed_live_and_paged_back(application, live_server, browser, search_node,
                                                                index):
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[search_node.url])
    client.indices.create(index=index, body={"mappings": LogFields().mappings()})
    namespace = ResourceNames("dev", "shop", "cart").namespace("dev")
    start = datetime.now(timezone.utc) - timedelta(minutes=10)

    def ship(numbers, level="info"):
        body = []
        for n in numbers:
            body += [{"index": {"_index": index}}, {
                "@timestamp": (start + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
                "log": f"request {n} served\n", "stream": "stdout", "level": level, "log_id": f"{n:08d}",
                "kubernetes": {"namespace_name": namespace, "pod_name": f"cart-{n % 3}", "container_name": "app"}}]
        client.bulk(body=body, refresh=True)

    ship(range(250))
    try:
        driver = browser
        sign_up(driver, live_server, "dana")
        driver.get(f"{live_server}/t/dev/shop/cart/logs")
        wait(driver).until(EC.text_to_be_present_in_element((By.ID, "log-lines"), "request 249 served"))
        page = driver.find_element(By.TAG_NAME, "html")
        lines = driver.find_elements(By.CSS_SELECTOR, "#log-lines li")
        assert len(lines) == 200 and "request 50 served" in lines[0].text  # the newest 200, oldest first

        ship([300, 301], level="ERROR")  # the live tail brings them at the bottom
        wait(driver).until(EC.text_to_be_present_in_element((By.ID, "log-lines"), "request 301 served"))
        last = driver.find_elements(By.CSS_SELECTOR, "#log-lines li")[-1]
        assert "request 301 served" in last.text and "level-error" in last.get_attribute("class")

        driver.find_element(By.CSS_SELECTOR, "#log-older button").click()  # older lines come in at the top
        wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#log-lines li")) == 252)
        texts = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#log-lines li")]
        assert "request 0 served" in texts[0] and len(set(texts)) == 252
        wait(driver).until(EC.text_to_be_present_in_element((By.ID, "log-older"), "Nothing older"))
        assert still_attached(page), "the panel reloaded the page"
        no_errors(driver)
    finally:
        client.indices.delete(index=index)
