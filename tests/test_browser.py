"""The path a newcomer takes, in headless Chromium against the portal served over real HTTP.

Sign up into a team, create a project and then an application through the
HTMX forms, and find the application on the dashboard. What only a browser can
tell is checked along the way: the live name feedback, rows swapped in without
a page reload, and a console free of errors (a Content-Security-Policy
violation, a failed script, a refused request would all show there).
"""

from __future__ import annotations


import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select

from tests import browser_support
from tests.browser_support import row_with_link, sign_up, still_attached, type_name_and_see_it_available, wait
from tests.factories import UserFactory

pytestmark = pytest.mark.browser

browser = browser_support.browser  # the shared headless Chromium fixture


def test_newcomer_signs_up_and_creates_a_project_and_an_application(app, live_server, browser):
    UserFactory(username="root", is_admin=True)  # the portal is in use: the newcomer is not its first user
    driver = browser

    # Signed out, the portal sends the newcomer to sign in; from there to sign up.
    sign_up(driver, live_server, "newcomer")
    dev = wait(driver).until(EC.presence_of_element_located((By.ID, "team-dev")))
    assert "No projects yet" in dev.text
    assert not driver.find_elements(By.ID, "team-ops"), "a plain member sees only the teams they are in"
    assert driver.find_element(By.CSS_SELECTOR, ".who a").text == "newcomer"

    # Projects page: live name feedback, then the row swapped in and the form emptied, with no reload.
    driver.find_element(By.LINK_TEXT, "Projects").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "project-form")))
    assert Select(driver.find_element(By.ID, "team")).first_selected_option.text == "Dev"
    page = driver.find_element(By.TAG_NAME, "html")
    type_name_and_see_it_available(driver, "web-shop", "project-name-feedback")
    driver.find_element(By.CSS_SELECTOR, "#project-form button[type=submit]").click()
    row = wait(driver).until(EC.visibility_of_element_located(row_with_link("project-rows", "web-shop")))
    assert still_attached(page), "creating a project reloaded the page instead of swapping the row in"
    assert "No projects yet" not in driver.find_element(By.ID, "project-rows").text, "the placeholder row stayed"
    assert driver.find_element(By.ID, "name").get_attribute("value") == ""

    # The project page: an application created the same way.
    row.find_element(By.LINK_TEXT, "web-shop").click()
    wait(driver).until(EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "dev / web-shop"))
    page = driver.find_element(By.TAG_NAME, "html")
    type_name_and_see_it_available(driver, "storefront", "app-name-feedback")
    Select(driver.find_element(By.ID, "template")).select_by_visible_text("Static site")
    driver.find_element(By.CSS_SELECTOR, "#application-form button[type=submit]").click()
    row = wait(driver).until(EC.visibility_of_element_located(row_with_link("app-rows", "storefront")))
    assert still_attached(page), "creating an application reloaded the page instead of swapping the row in"
    assert "static-site" in row.text
    assert "No applications yet" not in driver.find_element(By.ID, "app-rows").text, "the placeholder row stayed"
    assert driver.find_element(By.ID, "name").get_attribute("value") == ""

    # The dashboard lists it among the team's recent applications.
    driver.find_element(By.LINK_TEXT, "Dashboard").click()
    recent = wait(driver).until(EC.visibility_of_element_located((
        By.XPATH,
        "//section[@id='team-dev']//h3[normalize-space()='Recent applications']/following-sibling::table"
        "//tr[td/a[normalize-space()='storefront']]",
    )))
    cells = [td.text for td in recent.find_elements(By.TAG_NAME, "td")]
    assert cells[:3] == ["storefront", "web-shop", "static-site"]
    summary = driver.find_element(By.CSS_SELECTOR, "#team-dev h2 small").text
    assert summary == "1 project · 1 application"

    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], "errors in the browser console:\n" + "\n".join(e["message"] for e in severe)
