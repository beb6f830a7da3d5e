"""Family-descriptor embeddings on the wire: float16 little-endian bytes (contract, features
message), checked for size and finite values on the way in (``Rejected``, as every codec)."""

from __future__ import annotations

import numpy as np

from broker.codecs import Rejected


def embedding_to_bytes(vec: np.ndarray) -> bytes:
    """float16 little-endian bytes of a 1-D embedding; values beyond ±65504 are clipped."""
    arr = np.asarray(vec, dtype=np.float32).reshape(-1)
    if not np.isfinite(arr).all():
        raise ValueError("embedding holds NaN or inf")
    limit = float(np.finfo(np.float16).max)
    return np.clip(arr, -limit, limit).astype("<f2").tobytes()


_F16_EXPONENT = 0x7C00  # all exponent bits set: inf (zero mantissa) or NaN


def embedding_view(b: bytes, dim: int) -> np.ndarray:
    """Read-only float16 view of little-endian embedding bytes (no copy, no conversion);
    Rejected on size or non-finite values, exactly as :func:`embedding_from_bytes`."""
    if dim <= 0 or len(b) != 2 * dim:
        raise Rejected("wrong_dimension", f"{len(b)} bytes for a {dim}-d float16 embedding")
    arr = np.frombuffer(b, dtype="<f2")
    if int((arr.view("<u2") & 0x7FFF).max()) >= _F16_EXPONENT:
        raise Rejected("bad_value", "embedding holds NaN or inf")
    return arr


def embedding_from_bytes(b: bytes, dim: int) -> np.ndarray:
    """float32 array from float16 little-endian bytes; Rejected on size or non-finite values."""
    return embedding_view(b, dim).astype(np.float32)
