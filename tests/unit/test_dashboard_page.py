"""The dashboard page as served: its Content-Security-Policy admits exactly its own inline code."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from machinery_core import ui


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_the_policy_names_the_digests_of_the_page_own_script_and_style() -> None:
    # Given the page as the API serves it
    page = ui.dashboard()

    # When its inline script and style are read back from the body
    script = re.findall(r"<script>(.*?)</script>", page.body, flags=re.DOTALL)
    style = re.findall(r"<style>(.*?)</style>", page.body, flags=re.DOTALL)

    # Then each is there once, and the policy admits exactly those bytes and no inline else
    assert len(script) == len(style) == 1
    directives = page.headers["Content-Security-Policy"].split("; ")
    policy = dict(directive.split(" ", 1) for directive in directives)
    assert policy["script-src"] == _sha256(script[0])
    assert policy["style-src"] == _sha256(style[0])
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'"
    assert page.content_type == "text/html; charset=utf-8"


def test_the_page_loads_nothing_from_elsewhere_and_writes_no_html() -> None:
    body = ui.dashboard().body
    # no absolute URL: every request is relative to the API that served the page
    assert not re.search(r"(src|href)=\"(https?:)?//", body)
    assert 'fetch("/' not in body and "fetch('/" not in body
    # API text goes in as text only
    assert "innerHTML" not in body and "outerHTML" not in body
    assert "insertAdjacentHTML" not in body and "document.write" not in body


@pytest.mark.parametrize("blocks", ["", "<script>a</script><script>b</script>"])
def test_a_page_without_exactly_one_inline_script_is_refused(blocks: str) -> None:
    with pytest.raises(RuntimeError, match="exactly one inline <script>"):
        ui.policy(f"<style>p {{}}</style>{blocks}")
