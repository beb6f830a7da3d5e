"""What the store accepts as alert evidence: small, well-formed JPEG or PNG pictures only."""

from __future__ import annotations

from broker import images
from broker.images import ImageError

EVIDENCE_MAX_SIDE = 1024  # evidence pictures are small (the edge sends <= 384 px by default)


def evidence_type(data: bytes) -> str | ImageError:
    """``image/jpeg`` or ``image/png`` for a well-formed small JPEG/PNG, else why not: evidence
    is served to browsers, so nothing else (HTML, script, SVG) is ever stored as one."""
    try:
        info = images.sniff(data, max_pixels=EVIDENCE_MAX_SIDE**2, max_side=EVIDENCE_MAX_SIDE)
    except ImageError as exc:
        return exc
    return f"image/{info.encoding}"
