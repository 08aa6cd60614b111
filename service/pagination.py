"""Opaque page tokens (AIP-158), signed for the tenant and the listing that produced them.

A token carries the key after which its next page starts, behind an HMAC-SHA256 tag over
the tenant, the listing (the filter's fingerprint) and that key. Anything a client
changes, truncates or carries to another tenant or filter fails the tag and is refused
as INVALID_ARGUMENT; a key that passes is one this service wrote, so reading it cannot
fail.

The signing key must be the same on every server behind a load balancer, or a page
fetched from one server could not be continued on another. Hence, in order:
`WFE_PAGE_TOKEN_SECRET`; else a key derived from `WFE_JWT_SECRET` (already shared by
every server, and a one-way derivation under a fixed label keeps the two uses apart);
else a random secret kept in the data dir, which serves `wfe dev` and any servers that
share that directory (deployments with JWKS set the secret explicitly).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

from foundation.errors import FieldViolation, InvalidInput
from foundation.settings import Settings
from tenancy import TenantId

Row = TypeVar("Row")
logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE: Final = 50
MAX_PAGE_SIZE: Final = 200
MAX_TOKEN_LENGTH: Final = 1024
TAG_BYTES: Final = 16
# An answer's items get the message size limit less this (the response's own fields).
ANSWER_HEADROOM: Final = 4096
SECRET_FILE: Final = "page-token-secret"
DERIVATION_LABEL: Final = b"wfe page tokens v1"
TOKEN_ALPHABET: Final = re.compile(r"^[A-Za-z0-9_-]+$")


def page_size(requested: int) -> int:
    """The page size to use: the default for 0, at most MAX_PAGE_SIZE."""
    if requested < 0:
        raise InvalidInput(
            "page_size must not be negative",
            violations=[FieldViolation("page_size", "must be 0 (default) or positive")],
        )
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def signing_key(settings: Settings) -> bytes:
    """The key every server of a deployment signs page tokens with (see the module doc)."""
    if settings.page_token_secret is not None:
        return settings.page_token_secret.get_secret_value().encode()
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value().encode()
        return hmac.new(secret, DERIVATION_LABEL, hashlib.sha256).digest()
    return _data_dir_secret(settings.data_dir)


def _data_dir_secret(data_dir: Path) -> bytes:
    path = data_dir / SECRET_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Written aside, then linked into place: a racing process sees all of it or none.
            draft = data_dir / f".{SECRET_FILE}.{secrets.token_hex(8)}"
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_urlsafe(48))
            try:
                os.link(draft, path)
            except FileExistsError:
                pass
            finally:
                draft.unlink()
        return path.read_text().strip().encode()
    except OSError as error:  # e.g. a read-only file system: serve, but say what it costs
        logger.warning(
            "no page token secret (%s); tokens hold only on this process: set "
            "WFE_PAGE_TOKEN_SECRET",
            error.strerror,
        )
        return secrets.token_bytes(32)


class PageTokens:
    """Writes and checks the page tokens of every listing, with one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a page token key has at least 32 bytes")
        self._key = key

    def _tag(self, tenant: TenantId, listing: str, position: bytes) -> bytes:
        signed = b"\0".join((str(tenant).encode(), listing.encode(), position))
        return hmac.new(self._key, signed, hashlib.sha256).digest()[:TAG_BYTES]

    def encode(self, tenant: TenantId, listing: str, key: list[Any]) -> str:
        position = json.dumps(key, separators=(",", ":")).encode()
        raw = self._tag(tenant, listing, position) + position
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, token: str, tenant: TenantId, listing: str) -> list[Any] | None:
        """The key after which the next page starts; None for the first page."""
        if not token:
            return None
        raw = _canonical_bytes(token)
        if raw is not None and len(raw) > TAG_BYTES:
            tag, position = raw[:TAG_BYTES], raw[TAG_BYTES:]
            if hmac.compare_digest(tag, self._tag(tenant, listing, position)):
                key = json.loads(position)
                if isinstance(key, list):
                    return key
        raise InvalidInput(
            "page_token is not one this listing issued",
            violations=[FieldViolation("page_token", "use next_page_token from the same listing")],
        )

    def after(
        self,
        rows: Sequence[Row],
        shown: int,
        tenant: TenantId,
        listing: str,
        key: Callable[[Row], list[Any]],
    ) -> str:
        """The token of the page after the first `shown` of `rows`; empty when none is left.

        `rows` is fetched one longer than the page, so a row past `shown` means more exist.
        """
        if len(rows) <= shown or shown == 0:
            return ""
        return self.encode(tenant, listing, key(rows[shown - 1]))


def _canonical_bytes(token: str) -> bytes | None:
    """The bytes of an unpadded base64url token; None unless it is exactly their encoding."""
    if len(token) > MAX_TOKEN_LENGTH or not TOKEN_ALPHABET.fullmatch(token):
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        return None
    # Refuses the spellings base64 tolerates (stray bits in the last character).
    return raw if base64.urlsafe_b64encode(raw).decode().rstrip("=") == token else None


def fitting(sizes: Sequence[int], budget: int) -> int:
    """How many of the leading items, of these serialized sizes, fit in `budget` (at least 1)."""
    total = 0
    for count, size in enumerate(sizes):
        total += size + 8  # the field's tag and length prefix, generously
        if total > budget:
            return max(count, 1)
    return len(sizes)


class Created(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...


def creation_key(row: Created) -> list[Any]:
    """Where a newest-first listing by (created_at, id) resumes: after this row."""
    return [row.created_at.isoformat(), row.id]
