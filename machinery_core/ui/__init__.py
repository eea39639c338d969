"""The web dashboard: one HTML page, its style and script inline, served by `GET /ui`.

The page is read once per container (on its first request) and answered with a
Content-Security-Policy that admits exactly its own inline <style> and <script> by their
SHA-256 digests: no 'unsafe-inline', no second route for the script, and nothing but the
API's own origin may be fetched. Its diagrams are SVG turned into blob: URLs for <img>,
where an SVG can run no script.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

CONTENT_TYPE = "text/html; charset=utf-8"
PAGE_FILE = "dashboard.html"


@dataclass(frozen=True)
class Page:
    body: str
    headers: dict[str, str]
    content_type: str = CONTENT_TYPE


def _source(tag: str, html: str) -> str:
    """The text of the page's one inline <tag> element, exactly as the browser hashes it."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    if len(blocks) != 1:
        raise RuntimeError(f"{PAGE_FILE} must have exactly one inline <{tag}>, not {len(blocks)}")
    return str(blocks[0])


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def policy(html: str) -> str:
    """The page's Content-Security-Policy: its own inline style and script, the API, no more."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {_digest(_source('script', html))}",
            f"style-src {_digest(_source('style', html))}",
            # diagrams arrive as SVG blobs; the favicon is an empty data: URL (no request)
            "img-src 'self' blob: data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


@cache
def dashboard() -> Page:
    html = resources.files(__package__).joinpath(PAGE_FILE).read_text(encoding="utf-8")
    return Page(
        body=html,
        headers={
            "Content-Security-Policy": policy(html),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )
