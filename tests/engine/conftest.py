"""What the engine's process-level tests share."""

from __future__ import annotations

import pytest

from tests.conftest import require
from tests.engine_stack import broker_unavailable_reason, broker_url


@pytest.fixture
def shared_broker() -> str:
    """The machine's broker; each stack uses a queue of its own on it."""
    url = broker_url()
    require(broker_unavailable_reason(url), "a message broker")
    return url
