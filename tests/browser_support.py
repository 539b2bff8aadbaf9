"""Headless Chromium for the browser tests: the fixture and the helpers they share."""

from __future__ import annotations

import os

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

HOW_CHROMIUM = "Install it with `make setup-test` (or `apt-get install chromium chromium-driver`), or set {var} to its path."
WAIT_SECONDS = 10
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def _binary(env_var: str, default: str, what: str) -> str:
    # Always an explicit path: without one, Selenium Manager would try to download a browser.
    path = os.environ.get(env_var) or default
    if not os.access(path, os.X_OK):
        pytest.fail(f"{what} is missing at {path}. {HOW_CHROMIUM.format(var=env_var)}", pytrace=False)
    return path




@pytest.fixture
def browser(tmp_path):
    """Headless Chromium with a fresh profile, recording the console."""
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("CHROMIUM", "/usr/bin/chromium", "Chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=_binary("CHROMEDRIVER", "/usr/bin/chromedriver", "ChromeDriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_SECONDS)


def still_attached(element: WebElement) -> bool:
    """False once the page holding ``element`` has been replaced by another load."""
    try:
        element.tag_name
    except StaleElementReferenceException:
        return False
    return True


def row_with_link(tbody_id: str, text: str) -> tuple[str, str]:
    return By.XPATH, f"//tbody[@id='{tbody_id}']/tr[td/a[normalize-space()='{text}']]"


def type_name_and_see_it_available(driver, name: str, feedback_id: str) -> None:
    field = driver.find_element(By.ID, "name")
    field.send_keys(name)
    wait(driver).until(EC.text_to_be_present_in_element((By.ID, feedback_id), f"“{name}” is available."))


def sign_up(driver, base: str, username: str, team: str = "Dev") -> None:
    """From the signed-out home page to the sign-up form, and through it: the portal's way in."""
    driver.get(base + "/")
    wait(driver).until(EC.url_contains("/login"))
    driver.find_element(By.LINK_TEXT, "Create an account").click()
    wait(driver).until(EC.presence_of_element_located((By.ID, "signup-form")))
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "email").send_keys(f"{username}@example.com")
    driver.find_element(By.ID, "password").send_keys("a long enough password")
    Select(driver.find_element(By.ID, "team")).select_by_visible_text(team)
    driver.find_element(By.CSS_SELECTOR, "#signup-form button[type=submit]").click()
    wait(driver).until(EC.url_to_be(base + "/"))
