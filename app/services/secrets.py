"""Secrets at rest (provider API keys): Fernet encryption with a key derived from LOOM_SECRET_KEY (HKDF)."""
from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from app.logging_setup import remember_secret

PREFIX = "enc:v1:"


def _fernet(secret_key: str) -> Fernet:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"loom-secrets-at-rest", info=b"provider-keys"
               ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


def encrypt_secret(value: str | None, secret_key: str | None = None) -> str | None:
    if not value:
        return None
    token = _fernet(secret_key or current_app.config["SECRET_KEY"]).encrypt(value.encode()).decode()
    return PREFIX + token


def decrypt_secret(stored: str | None, secret_key: str | None = None) -> str | None:
    """The clear value; values stored before encryption existed are returned as they are."""
    if not stored:
        return None
    if not stored.startswith(PREFIX):
        remember_secret(stored)  # whatever is decrypted in this process never reaches a log line
        return stored
    try:
        value = _fernet(secret_key or current_app.config["SECRET_KEY"]).decrypt(stored[len(PREFIX):]).decode()
    except InvalidToken as exc:
        raise ValueError("a stored secret cannot be decrypted: was LOOM_SECRET_KEY changed?") from exc
    remember_secret(value)
    return value
