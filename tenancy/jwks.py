"""Signing keys from a JWKS URL, fetched off the event loop's critical path and cached.

Keys are cached for a TTL. A token whose `kid` is unknown triggers a refresh, but at
most one per `min_refresh_seconds`, and concurrent callers share one fetch, so a flood
of tokens with random `kid`s cannot turn into a flood of requests to the key server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

logger = logging.getLogger(__name__)

ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC"})


class JwksUnavailable(Exception):
    """The key set could not be fetched and no cached copy is usable."""


class JwksKeySet:
    """The keys published at `url`, by `kid`."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._client = httpx.AsyncClient(timeout=timeout_seconds, transport=transport)
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def key(self, kid: str) -> PyJWK | None:
        """The key with this `kid`, refreshing the set if it is stale or lacks the kid."""
        if self._is_stale() or kid not in self._keys:
            await self._refresh(kid)
        return self._keys.get(kid)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._cache_seconds

    async def _refresh(self, kid: str) -> None:
        async with self._lock:
            now = self._clock()
            if not self._is_stale() and kid in self._keys:
                return  # another caller refreshed while this one waited
            last = self._attempted_at
            if last is not None and now - last < self._min_refresh_seconds:
                return  # throttled: keep serving the cached set
            self._attempted_at = now
            try:
                self._keys = await self._fetch()
                self._fetched_at = self._clock()
            except (httpx.HTTPError, ValueError, PyJWTError) as exc:
                logger.warning("JWKS fetch from %s failed: %s", self._url, exc)
                if self._fetched_at is None:
                    raise JwksUnavailable(str(exc)) from exc

    async def _fetch(self) -> dict[str, PyJWK]:
        self.fetch_count += 1
        response = await self._client.get(self._url, headers={"Accept": "application/json"})
        response.raise_for_status()
        document: Any = response.json()
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("the JWKS document has no list of keys")
        keys: dict[str, PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("kty") not in ASYMMETRIC_KEY_TYPES:
                continue  # symmetric keys are never taken from a key server
            if entry.get("use", "sig") != "sig" or not isinstance(entry.get("kid"), str):
                continue
            try:
                keys[entry["kid"]] = PyJWK(entry)
            except PyJWTError as exc:  # PyJWKError and InvalidKeyError alike
                logger.warning("skipping unusable JWKS key %s: %s", entry.get("kid"), exc)
        return keys
