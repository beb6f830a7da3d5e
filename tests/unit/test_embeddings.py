"""Family-descriptor embeddings on the wire (broker/embeddings.py): float16 bytes, checked."""

from __future__ import annotations

import numpy as np
import pytest

from broker import embeddings
from broker.codecs import Rejected

pytestmark = pytest.mark.unit


def test_embeddings() -> None:
    vec = np.random.default_rng(1).normal(size=2048).astype(np.float32)
    data = embeddings.embedding_to_bytes(vec)
    assert len(data) == 4096 and data[:2] == np.float16(vec[0]).astype("<f2").tobytes()
    back = embeddings.embedding_from_bytes(data, 2048)
    assert back.dtype == np.float32 and back.shape == (2048,)
    assert np.allclose(back, vec, rtol=1e-3, atol=1e-3)
    back[0] = 5.0  # a writable copy
    big = embeddings.embedding_from_bytes(embeddings.embedding_to_bytes(np.array([1e6, -1e6])), 2)
    assert list(big) == [65504.0, -65504.0]
    with pytest.raises(ValueError):
        embeddings.embedding_to_bytes(np.array([1.0, np.nan]))
    for raw, dim in ((data, 2047), (data[:-1], 2048), (b"", 0)):
        with pytest.raises(Rejected) as info:
            embeddings.embedding_from_bytes(raw, dim)
        assert info.value.reason == "wrong_dimension"
    with pytest.raises(Rejected) as info:
        embeddings.embedding_from_bytes(np.array([1, np.inf], dtype="<f2").tobytes(), 2)
    assert info.value.reason == "bad_value"
