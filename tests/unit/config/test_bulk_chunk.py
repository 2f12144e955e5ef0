"""[queue] bulk_chunk: its default and bounds are the bulk code's own."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from appliance.config.schema import QueueSection
from appliance.queue.bulk import DEFAULT_CHUNK, MAX_CHUNK


def test_default_and_bounds_are_the_bulk_codes() -> None:
    assert QueueSection().bulk_chunk == DEFAULT_CHUNK
    assert QueueSection(bulk_chunk=MAX_CHUNK).bulk_chunk == MAX_CHUNK
    for bad in (0, MAX_CHUNK + 1):
        with pytest.raises(ValidationError, match="bulk_chunk"):
            QueueSection(bulk_chunk=bad)
