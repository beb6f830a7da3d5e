"""The bad-input corpus: every case rejected with its expected reason, no image body decoded."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from broker import codecs
from broker.messages import DeadLetter, FrameIn, SensorIn

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
BAD = CORPUS / "bad"
MANIFEST = json.loads((BAD / "manifest.json").read_text())


def _load_maker() -> Any:
    spec = importlib.util.spec_from_file_location("make_corpus", CORPUS / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _load_maker()


@pytest.fixture
def no_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open or decode an image with Pillow fails the test."""
    from PIL import Image

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the codec tried to decode an image body with Pillow")

    monkeypatch.setattr(Image, "open", forbidden)
    monkeypatch.setattr(Image.Image, "load", forbidden)
    monkeypatch.setattr(Image, "frombytes", forbidden)


def _decode(decoder: str, topic: str, payload: bytes) -> object:
    if decoder == "input":
        return codecs.decode_input(topic, payload, receipt="corpus")
    return codecs.decode_output(topic, payload)


def _assert_rejected(decoder: str, topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(codecs.Rejected) as info:
        _decode(decoder, topic, payload)
    err = info.value
    assert err.reason == reason, f"expected {reason}, got {err.reason}: {err.detail}"
    assert err.detail and len(err.detail) <= 300
    letter = codecs.dead_letter("corpus", topic, payload, err)
    assert isinstance(letter, DeadLetter)
    assert letter.reason == reason and letter.payload_size == len(payload)
    assert letter.payload_head == payload[:64]
    assert "\x00" not in letter.topic
    # the dead letter itself travels on the bus: it must survive its own codec
    assert codecs.decode_output("lw/v1/_sys/deadletter/corpus", codecs.encode(letter)) == letter


FILE_CASES = sorted(MANIFEST["files"].items())


def test_manifest_matches_files() -> None:
    on_disk = {p.name for p in BAD.iterdir()} - {"manifest.json"}
    assert on_disk == set(MANIFEST["files"])
    assert len(MANIFEST["files"]) >= 40
    reasons = {c["reason"] for c in MANIFEST["files"].values()}
    reasons |= {c["reason"] for c in MANIFEST["bad_topics"] + MANIFEST["generated"]}
    for needed in (
        "bad_json",
        "json_nan",
        "json_too_deep",
        "json_number_too_large",
        "json_duplicate_key",
        "bad_utf8",
        "bad_id",
        "bad_topic",
        "payload_too_large",
        "image_truncated",
        "image_too_large",
    ):
        assert needed in reasons


@pytest.mark.parametrize(("name", "case"), FILE_CASES, ids=[n for n, _ in FILE_CASES])
@pytest.mark.usefixtures("no_pillow")
def test_corpus_file(name: str, case: dict[str, str]) -> None:
    payload = (BAD / name).read_bytes()
    if case["reason"] == "ok":  # controls: the same payloads are fine on a good topic
        msg = _decode(case["decoder"], case["topic"], payload)
        assert isinstance(msg, FrameIn | SensorIn)
        return
    _assert_rejected(case["decoder"], case["topic"], payload, case["reason"])


@pytest.mark.parametrize("case", MANIFEST["bad_topics"], ids=lambda c: repr(c["topic"])[-40:])
@pytest.mark.usefixtures("no_pillow")
def test_bad_topic_ids(case: dict[str, str]) -> None:
    payload = (BAD / case["file"]).read_bytes()
    _assert_rejected("input", case["topic"], payload, case["reason"])


@pytest.mark.parametrize("case", MANIFEST["generated"], ids=lambda c: c["name"])
@pytest.mark.usefixtures("no_pillow")
def test_generated_large_cases(case: dict[str, str]) -> None:
    payload = MAKER.build_generated(case["name"])
    _assert_rejected(case["decoder"], case["topic"], payload, case["reason"])


def test_corpus_is_reproducible() -> None:
    """The stored files are exactly what make_corpus.py writes (no hand edits)."""
    for name, _topic, _decoder, _reason, payload in MAKER.cases():
        if name.endswith(".jpg") or "envelope" in name:
            continue  # JPEG bytes depend on the libjpeg build; checked by reason instead
        assert (BAD / name).read_bytes() == payload, name


def test_bomb_header_declares_50000_squared() -> None:
    data = (BAD / "png_50000x50000.png").read_bytes()
    assert int.from_bytes(data[16:20], "big") == 50_000
    assert int.from_bytes(data[20:24], "big") == 50_000


def test_pillow_never_imported_by_codecs() -> None:
    """In a fresh interpreter, decoding the whole corpus never even imports Pillow."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from broker import codecs\n"
        f"bad = Path({str(BAD)!r})\n"
        "m = json.loads((bad / 'manifest.json').read_text())\n"
        "for name, c in m['files'].items():\n"
        "    data = (bad / name).read_bytes()\n"
        "    try:\n"
        "        if c['decoder'] == 'input':\n"
        "            codecs.decode_input(c['topic'], data)\n"
        "        else:\n"
        "            codecs.decode_output(c['topic'], data)\n"
        "    except codecs.Rejected:\n"
        "        pass\n"
        "print(sorted(k for k in sys.modules if k == 'PIL' or k.startswith('PIL.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.usefixtures("no_pillow")
def test_pillow_guard_is_live() -> None:
    """The guard above really trips when an image is decoded, so the corpus tests can fail."""
    import io

    from PIL import Image

    with pytest.raises(AssertionError, match="decode an image body"):
        Image.open(io.BytesIO((BAD / "valid.jpg").read_bytes()))
