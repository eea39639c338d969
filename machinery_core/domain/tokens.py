"""Callback tokens: the credential a callback service answers with.

At least 256 random bits, single use, and only their SHA-256 is ever stored.
"""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
