"""Headless Debian Chromium driven by Selenium through the system chromedriver (no downloads)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.waiting import wait_for

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "console"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMEDRIVER).exists() and Path(CHROMIUM).exists()):
        pytest.fail("chromium and chromium-driver are missing: run `bash tests/services.sh up`")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: webdriver.Chrome, base: str, token: str) -> None:
    driver.delete_all_cookies()
    driver.get(base + "/console/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(lambda: driver.find_elements(By.ID, "who"), what="signed in")


def click_and_confirm(driver: webdriver.Chrome, button_id: str, reason: str = "") -> None:
    driver.find_element(By.ID, button_id).click()
    wait_for(lambda: driver.find_elements(By.ID, "confirm"), what="the confirmation page")
    if reason:
        driver.find_element(By.ID, "reason").send_keys(reason)
    driver.find_element(By.ID, "confirm").click()
    wait_for(lambda: driver.find_elements(By.ID, "switch"), what="back on Now")


def screenshot(driver: webdriver.Chrome, name: str) -> None:
    """Into tests/artifacts/console/ (gitignored); also into docs/console/ when
    ``REMEDIATOR_UPDATE_SCREENSHOTS=1`` (so a test run leaves the tracked docs alone)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("REMEDIATOR_UPDATE_SCREENSHOTS") == "1" and DOCS.is_dir():
        shutil.copyfile(path, DOCS / f"{name}.png")
