"""Callback tokens of `webhook` steps: which attempt a token completes, and its secret.

A token names its execution, step instance and attempt, and carries a random secret; the
attempt keeps only the secret's digest, so the stored execution never holds a usable token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from foundation.errors import FieldViolation, InvalidInput

TOKEN_PREFIX: Final = "whk1_"
MAX_TOKEN_LENGTH: Final = 1024


@dataclass(frozen=True, slots=True)
class CallbackToken:
    """What a token names, and the secret only its holder knows."""

    execution_id: str
    instance: str
    attempt: int
    secret: str

    def render(self) -> str:
        text = f"{self.execution_id}|{self.instance}|{self.attempt}|{self.secret}"
        return TOKEN_PREFIX + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @property
    def digest(self) -> str:
        return digest_of(self.secret)


def issue(execution_id: str, instance: str, attempt: int) -> CallbackToken:
    return CallbackToken(execution_id, instance, attempt, secrets.token_urlsafe(24))


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def read(token: str) -> CallbackToken:
    """The token's parts; InvalidInput when it is not a token this service issued."""
    refused = InvalidInput(
        "the callback token is malformed",
        violations=[FieldViolation("token", "must be a token a webhook step issued")],
    )
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        raise refused
    encoded = token[len(TOKEN_PREFIX) :]
    try:
        text = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise refused from None
    parts = text.split("|")
    number = parts[2] if len(parts) == 4 else ""
    if not (number.isascii() and number.isdigit() and len(number) <= 9) or not all(parts):
        raise refused
    return CallbackToken(parts[0], parts[1], int(parts[2]), parts[3])
