"""Image header sniffing: sizes from real encoder output, and every rejection reason."""

from __future__ import annotations

import io
import struct
import time
import zlib
from typing import Any

import pytest
from PIL import Image

from broker import images
from broker.images import ImageError, ImageInfo, sniff

pytestmark = pytest.mark.unit


def encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png(
    width: int,
    height: int,
    *,
    depth: int = 8,
    colour: int = 2,
    body: bytes | None = None,
    extra: bytes = b"",
) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 16)) if body is None else body
    return images.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"") + extra


def reason(data: bytes, **kw: Any) -> str:
    with pytest.raises(ImageError) as info:
        sniff(data, **kw)
    assert info.value.detail
    return info.value.reason


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    return encode(Image.new("RGB", (320, 240), (10, 200, 30)), "JPEG", quality=90)


@pytest.mark.parametrize(
    ("mode", "kw"),
    [
        ("RGB", {}),
        ("L", {}),
        ("CMYK", {}),
        ("RGB", {"progressive": True}),
        ("RGB", {"subsampling": 0, "quality": 95}),
    ],
)
def test_jpeg_sizes_from_real_files(mode: str, kw: dict[str, object]) -> None:
    data = encode(Image.new(mode, (123, 45)), "JPEG", **kw)
    assert sniff(data) == ImageInfo("jpeg", 123, 45)


def test_jpeg_with_exif_and_icc_segments() -> None:
    img = Image.new("RGB", (64, 32))
    exif = Image.Exif()
    exif[0x010F] = "LineWatch camera"
    data = encode(img, "JPEG", exif=exif.tobytes(), icc_profile=b"\x00" * 70_000)
    assert sniff(data) == ImageInfo("jpeg", 64, 32)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "1", "I;16", "LA"])
def test_png_sizes_from_real_files(mode: str) -> None:
    assert sniff(encode(Image.new(mode, (77, 19)), "PNG")) == ImageInfo("png", 77, 19)


def test_handmade_png_and_interlace_flag() -> None:
    assert sniff(png(5, 7)) == ImageInfo("png", 5, 7)
    ihdr = struct.pack(">IIBBBBB", 5, 7, 8, 2, 0, 0, 1)
    data = images.PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"x") + chunk(b"IEND", b"")
    assert sniff(data).width == 5


def test_jpeg_trailing_zero_padding(jpeg: bytes) -> None:
    assert sniff(jpeg + b"\x00" * images.MAX_TRAILING_ZEROS).width == 320
    assert reason(jpeg + b"\x00" * (images.MAX_TRAILING_ZEROS + 1)) == "image_truncated"
    assert reason(jpeg + b"garbage") == "image_truncated"


@pytest.mark.parametrize("cut", [3, 4, 10, 100, 300, 600, -400, -3, -2, -1])
def test_truncated_jpeg(jpeg: bytes, cut: int) -> None:
    assert reason(jpeg[:cut]) == "image_truncated"


@pytest.mark.parametrize("cut", [8, 20, 33, 40, -20, -12, -1])
def test_truncated_png(cut: int) -> None:
    data = encode(Image.new("RGB", (40, 30), (1, 2, 3)), "PNG")
    got = reason(data[:cut])
    assert got == "image_truncated"


def test_png_bad_structure() -> None:
    assert reason(png(4, 4, body=b"")) == "bad_image"  # no IDAT
    assert reason(png(4, 4, extra=b"\x00")) == "bad_image"  # data after IEND
    assert reason(png(4, 4, body=struct.pack(">I", 3) + b"ID1T" + b"abc" + b"crc!")) == "bad_image"
    good = bytearray(png(4, 4))
    good[29] ^= 0xFF  # IHDR CRC
    assert reason(bytes(good)) == "bad_image"
    assert reason(png(4, 4, depth=3)) == "bad_image"
    assert reason(png(4, 4, colour=5)) == "bad_image"
    first = images.PNG_SIGNATURE + chunk(b"gAMA", b"\x00\x00\xb1\x8f")
    assert reason(first + png(4, 4)[8:]) == "bad_image"  # IHDR must come first


def test_png_too_many_chunks() -> None:
    many = chunk(b"tEXt", b"k\x00v") * (images.MAX_PNG_CHUNKS + 1)
    assert reason(png(4, 4, body=many + chunk(b"IDAT", b"x"))) == "decode_budget"
    idats = chunk(b"IDAT", b"x") * (images.MAX_PNG_CHUNKS + 1)
    assert reason(png(4, 4, body=idats)) == "bad_image"


@pytest.mark.parametrize(
    ("w", "h"), [(50_000, 50_000), (16385, 10), (10, 16385), (7000, 7000), (2**31, 2**31)]
)
def test_png_too_large(w: int, h: int) -> None:
    header = png(w, h)[:33]  # header only: size is judged before truncation
    assert reason(header) == "image_too_large"
    assert reason(png(w, h)) == "image_too_large"


def test_limits_are_configurable() -> None:
    assert sniff(png(100, 100), max_pixels=10_000).width == 100
    assert reason(png(101, 100), max_pixels=10_000) == "image_too_large"
    assert reason(png(65, 2), max_side=64) == "image_too_large"
    assert sniff(png(16384, 2)).width == 16384


def test_zero_sizes() -> None:
    assert reason(png(0, 10)) == "bad_image"
    assert reason(png(10, 0)) == "bad_image"
    zero_h = encode(Image.new("L", (8, 8)), "JPEG")
    sof = zero_h.index(b"\xff\xc0")
    patched = zero_h[: sof + 5] + b"\x00\x00" + zero_h[sof + 7 :]
    assert reason(patched) == "bad_image"


def _replace_sof(data: bytes, marker: int, precision: int = 8) -> bytes:
    sof = data.index(b"\xff\xc0")
    head = bytes([marker, data[sof + 2], data[sof + 3], precision])
    return data[: sof + 1] + head + data[sof + 5 :]


@pytest.mark.parametrize("marker", [0xC3, 0xC5, 0xC9, 0xCA, 0xCF])
def test_unsupported_jpeg_processes(jpeg: bytes, marker: int) -> None:
    assert reason(_replace_sof(jpeg, marker)) == "unsupported_encoding"


def test_twelve_bit_jpeg_unsupported(jpeg: bytes) -> None:
    assert reason(_replace_sof(jpeg, 0xC0, precision=12)) == "unsupported_encoding"


def test_jpeg_bad_markers(jpeg: bytes) -> None:
    assert reason(b"\xff\xd8\xff\xd9") == "bad_image"  # EOI before any frame
    assert reason(jpeg[:2] + b"\xff\xd8" + jpeg[2:]) == "bad_image"  # second SOI
    assert reason(jpeg[:2] + b"\xff\xfe\x00\x01" + jpeg[2:]) == "bad_image"  # length < 2
    no_sof = b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 6 + b"\xff\xd9"
    assert reason(no_sof) == "bad_image"  # scan before frame header
    assert reason(jpeg[:2] + b"\x12\x34" + jpeg[2:]) == "bad_image"
    sof = jpeg.index(b"\xff\xc0")
    assert reason(jpeg[: sof + 2] + b"\x00\x09" + jpeg[sof + 4 :]) == "bad_image"  # SOF length


def test_jpeg_with_many_segments_is_bounded() -> None:
    comment = b"\xff\xfe\x00\x04hi"
    data = b"\xff\xd8" + comment * (images.MAX_JPEG_SEGMENTS + 5) + b"\xff\xd9"
    assert reason(data) == "bad_image"


def test_jpeg_fill_bytes_are_skipped(jpeg: bytes) -> None:
    padded = jpeg[:2] + b"\xff" * 10 + jpeg[2:]
    assert sniff(padded).height == 240
    start = time.perf_counter()
    assert reason(b"\xff\xd8" + b"\xff" * 2_000_000) == "image_truncated"
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("data", "want"),
    [
        (b"GIF89a\x01\x00\x01\x00", "unsupported_encoding"),
        (b"BM\x00\x00\x00\x00", "unsupported_encoding"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "unsupported_encoding"),
        (b"\x00\x00\x00\x1cftypavif", "unsupported_encoding"),
        (b"II*\x00\x08\x00\x00\x00", "unsupported_encoding"),
        (b"", "bad_image"),
        (b"\xff\xd8", "bad_image"),
        (b"hello", "bad_image"),
        (b"\x89PNG\r\n\x1a", "bad_image"),
    ],
)
def test_unknown_formats(data: bytes, want: str) -> None:
    assert reason(data) == want


def test_detect() -> None:
    assert images.detect(b"\xff\xd8\xff\xe0") == "jpeg"
    assert images.detect(images.PNG_SIGNATURE) == "png"
    assert images.detect(b"\xff\xd8") is None


def _photo(**kw: object) -> bytes:
    """A camera-like 640x480 JPEG (about 50 kB at quality 75): gradient plus sensor noise."""
    grey = Image.radial_gradient("L").resize((640, 480))
    noise = Image.effect_noise((640, 480), 25)
    img = Image.merge("RGB", (grey, Image.blend(grey, noise, 0.3), noise))
    return encode(img, "JPEG", **{"quality": 75, **kw})


def _pillow_decodes(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"optimize": True},
        {"subsampling": 0, "quality": 95},
        {"restart_marker_blocks": 4},
        {"progressive": True},
    ],
)
def test_jpeg_cut_short_then_eoi_reappended(kw: dict[str, object]) -> None:
    data = _photo(**kw)
    images.check_jpeg_scan(data)  # complete: accepted
    for frac in (0.1, 0.35, 0.5, 0.8, 0.97):
        cut = data[: int(len(data) * frac)] + images.JPEG_EOI
        assert _pillow_decodes(cut) == (640, 480)  # Pillow takes it silently
        assert sniff(cut).width == 640  # so does the header-only sniff of the codecs
        with pytest.raises(ImageError) as info:
            images.check_jpeg_scan(cut)
        assert info.value.reason == "image_truncated", (frac, info.value)
        assert "scan data ends" in info.value.detail


def scan_reason(data: bytes) -> str:
    with pytest.raises(ImageError) as info:
        images.check_jpeg_scan(data)
    assert info.value.detail
    return info.value.reason


def test_jpeg_cut_on_a_stuffed_byte_is_truncated() -> None:
    data = _photo()
    ff = data.index(b"\xff\x00", len(data) // 2)
    assert scan_reason(data[: ff + 1] + images.JPEG_EOI) == "image_truncated"  # dangling FF
    assert scan_reason(data[:ff] + images.JPEG_EOI) == "image_truncated"


def test_truncation_found_even_if_pillow_loads_truncated_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = _photo()
    images.check_jpeg_scan(data)
    assert scan_reason(data[: len(data) // 2] + images.JPEG_EOI) == "image_truncated"


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_scan_check_other_colour_models(mode: str) -> None:
    data = encode(Image.open(io.BytesIO(_photo())).convert(mode), "JPEG", quality=80)
    images.check_jpeg_scan(data)
    assert scan_reason(data[: len(data) * 2 // 3] + images.JPEG_EOI) == "image_truncated"


def test_scan_check_needs_a_sound_jpeg(jpeg: bytes) -> None:
    data = _photo()
    images.check_jpeg_scan(data[:-2] + b"\xff" * 3 + images.JPEG_EOI)  # fill bytes: fine
    images.check_jpeg_scan(data + b"\x00" * 4)  # padding after EOI: fine
    assert scan_reason(png(4, 4)) == "bad_image"
    assert scan_reason(data[:-2]) == "image_truncated"  # no EOI at all
    assert scan_reason(jpeg[:2] + b"\xff\xd8" + jpeg[2:]) == "bad_image"


def test_sniff_is_fast_and_does_not_scale_with_body(jpeg: bytes) -> None:
    big = encode(Image.effect_noise((1600, 1200), 60).convert("RGB"), "JPEG", quality=95)
    assert len(big) > 500_000
    for data in (jpeg, big):
        start = time.perf_counter()
        for _ in range(200):
            sniff(data)
        assert (time.perf_counter() - start) / 200 < 0.001


def _best_of(fn: object, data: bytes, n: int = 20) -> float:
    assert callable(fn)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn(data)
        best = min(best, (time.perf_counter() - start) / n)
    return best


def test_scan_check_costs_less_than_a_decode() -> None:
    """The entropy check of a baseline JPEG (1/8-scale decode) stays below one full decode."""
    data = _photo()
    assert 30_000 < len(data) < 80_000
    assert _best_of(images.check_jpeg_scan, data) < _best_of(_pillow_decodes, data)


@pytest.mark.parametrize(
    ("mode", "kw"),
    [
        ("RGB", {}),
        ("RGB", {"subsampling": 0, "quality": 95}),
        ("RGB", {"restart_marker_blocks": 2}),
        ("RGB", {"progressive": True}),
        ("L", {}),
        ("CMYK", {}),
    ],
)
def test_decode_jpeg_gives_pillows_pixels(mode: str, kw: dict[str, object]) -> None:
    src = Image.open(io.BytesIO(_photo())).convert(mode)
    data = encode(src, "JPEG", **{"quality": 80, **kw})
    with Image.open(io.BytesIO(data)) as ref:
        ref.load()
        got = images.decode_jpeg(data)
        assert (got.mode, got.size) == (ref.mode, ref.size)
        assert got.tobytes() == ref.tobytes()
    with pytest.raises(ImageError) as info:
        images.decode_jpeg(data[: len(data) // 2] + images.JPEG_EOI)
    assert info.value.reason == "image_truncated"


def test_decode_jpeg_costs_about_one_decode() -> None:
    data = _photo()
    assert _best_of(images.decode_jpeg, data) < 1.5 * _best_of(_pillow_decodes, data)
