"""The chat page in a real browser: it streams a reply, keeps the conversation and shows Chinese."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import API_KEY

CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium on this machine")
def test_the_page_chats(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(server + "/")
            assert page.text_content("#model") == "tiny"
            page.fill("#api-key", API_KEY)
            page.fill("#system", "你是一个助手。")
            page.fill("#max-tokens", "8")
            page.fill("#input", "你好，世界")
            page.click("#send")
            page.wait_for_selector(".msg.assistant")
            page.wait_for_function("!document.getElementById('send').disabled")
            page.fill("#input", "hello again")
            page.press("#input", "Enter")
            page.wait_for_function("document.querySelectorAll('.msg.assistant').length == 2 && "
                                   "!document.getElementById('send').disabled")
            users = page.locator(".msg.user").all_text_contents()
            assert users == ["你好，世界", "hello again"]
            assert not page.locator(".msg.error").count()
        finally:
            browser.close()


def test_the_page_is_served_as_utf8_html(server):
    import httpx2

    response = httpx2.get(server + "/")
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    assert "charset=utf-8" in response.headers["content-type"] and '<meta charset="utf-8">' in response.text
    assert "Noto Sans CJK SC" in response.text and "/v1/chat/completions" in response.text
