"""A kiosk on a wall screen, in headless Chromium against the portal served over real HTTP: it cycles through
its teams, says so at once when the portal goes away, and recovers by itself when the portal comes back, with
one board on the page all along (swapped, never appended)."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC

from portal.models import Team
from portal.services import kiosks
from tests import browser_support
from tests.browser_support import wait
from tests.factories import ApplicationFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.browser

browser = browser_support.browser  # the shared headless Chromium fixture

EVERY = 2  # seconds between two polls: each team shows this long


def board_title(driver) -> str:
    return driver.find_element(By.CSS_SELECTOR, "#board h1").text


def updated_at(driver) -> str:
    return driver.find_element(By.ID, "board-updated").text


def test_the_kiosk_shows_an_outage_and_recovers_by_itself(app, restartable_server, browser):
    driver = browser
    for team, project, application in (("dev", "shop", "storefront"), ("ops", "tools", "pager")):
        ApplicationFactory(project=ProjectFactory(name=project, team=Team.by_name(team)), name=application)
    secret = kiosks.create_kiosk_token(UserFactory(username="root", is_admin=True), "hall", ["dev", "ops"]).secret

    driver.get(f"{restartable_server.url}/kiosk/{secret}?every={EVERY}")
    wait(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#board h1"), "Dev"))
    assert "storefront" in driver.find_element(By.ID, "board").text
    assert driver.find_element(By.TAG_NAME, "body").value_of_css_property("background-color") == "rgba(11, 14, 20, 1)"
    # It cycles: Ops next, then Dev again, each poll swapping the one board.
    wait(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#board h1"), "Ops"))
    assert "pager" in driver.find_element(By.ID, "board").text
    wait(driver).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#board h1"), "Dev"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "section.board")) == 1
    assert not driver.find_element(By.ID, "kiosk-status").is_displayed()
    assert driver.find_element(By.ID, "kiosk-clock").text

    # The portal goes away: the next poll fails, and the screen says since when.
    restartable_server.stop()
    before = updated_at(driver)
    status = wait(driver).until(EC.visibility_of_element_located((By.ID, "kiosk-status")))
    assert "Portal unreachable since" in status.text
    assert "kiosk-stale" in driver.find_element(By.TAG_NAME, "body").get_attribute("class")
    assert updated_at(driver) == before  # the last good board stays, dimmed

    # Back on the same port: the next poll swaps a fresh board in and the banner goes by itself.
    restartable_server.start()
    wait(driver).until(EC.invisibility_of_element_located((By.ID, "kiosk-status")))
    wait(driver).until(lambda d: updated_at(d) != before)
    assert "kiosk-stale" not in driver.find_element(By.TAG_NAME, "body").get_attribute("class")
    assert len(driver.find_elements(By.CSS_SELECTOR, "section.board")) == 1
    assert board_title(driver).startswith(("Dev", "Ops"))

    # The failed polls while the portal was down (and htmx's notes on them) are the only errors the console shows.
    expected = ("ERR_CONNECTION_REFUSED", "htmx:sendError", "htmx:afterRequest")
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
              and not any(text in e["message"] for text in expected)]
    assert severe == [], "errors in the browser console:\n" + "\n".join(e["message"] for e in severe)


def test_a_revoked_kiosk_token_empties_the_screen(app, live_server, browser):
    driver = browser
    ApplicationFactory(project=ProjectFactory(name="shop"), name="storefront")
    admin = UserFactory(username="root", is_admin=True)
    new = kiosks.create_kiosk_token(admin, "hall", ["dev"])
    driver.get(f"{live_server}/kiosk/{new.secret}?every={EVERY}")
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "board"), "storefront"))
    kiosks.revoke_kiosk_token(admin, new.token.id)
    status = wait(driver).until(EC.visibility_of_element_located((By.ID, "kiosk-status")))
    assert "Portal answered 404" in status.text
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "board"), "no longer available"))
    assert "storefront" not in driver.find_element(By.ID, "board").text


def test_a_portal_too_slow_to_answer_counts_as_an_outage(app, live_server, browser, monkeypatch):
    from portal.services import boards

    driver = browser
    ApplicationFactory(project=ProjectFactory(name="shop"), name="storefront")
    secret = kiosks.create_kiosk_token(UserFactory(username="root", is_admin=True), "hall", ["dev"]).secret
    driver.get(f"{live_server}/kiosk/{secret}?every={EVERY}")
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, "board"), "storefront"))
    assert driver.find_element(By.ID, "board").get_attribute("hx-request") == '{"timeout": 2000}'

    team_board = boards.team_board
    sleeping = []

    def slow(viewer, team_name):
        import time

        sleeping.append(team_name)
        try:
            time.sleep(EVERY + 1.5)  # longer than the poll's timeout
            return team_board(viewer, team_name)
        finally:
            sleeping.pop()

    monkeypatch.setattr(boards, "team_board", slow)
    status = wait(driver).until(EC.visibility_of_element_located((By.ID, "kiosk-status")))
    assert "Portal not answering since" in status.text
    monkeypatch.setattr(boards, "team_board", team_board)
    wait(driver).until(EC.invisibility_of_element_located((By.ID, "kiosk-status")))
    wait(driver).until(lambda d: not sleeping)  # the abandoned requests end before the database is reset
