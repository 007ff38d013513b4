"""Slack payloads and uploaded files through `redact`: structure and binary content kept, every
string and text encoding redacted, so the gateway needs no knowledge of either."""

from __future__ import annotations

import codecs

from bot.base.redact.text import redact

# Values that are our own identifiers or Block Kit structure, never free text.
_STRUCTURAL = frozenset(
    {"type", "action_id", "block_id", "style", "channel", "ts", "thread_ts", "user", "response_type"}
)


def redact_payload(value: object) -> object:
    """Every string inside a Slack payload (text, blocks, attachments, button values, URLs),
    redacted; structure and identifiers untouched."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [redact_payload(v) for v in value]
    if isinstance(value, dict):
        return {k: (v if k in _STRUCTURAL else redact_payload(v)) for k, v in value.items()}
    return value


redact_blocks = redact_payload

_BINARY_MAGIC = (
    b"\x89PNG",
    b"\xff\xd8\xff",
    b"GIF8",
    b"%PDF",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"BZh",
    b"\xfd7zXZ",
    b"RIFF",
    b"\x00asm",
    b"\x7fELF",
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _text_encoding(data: bytes) -> str | None:
    """The encoding of a text file, or None for binary data (images, archives) that must go out
    byte for byte: a BOM, UTF-16 without one (NULs on one side), UTF-8, else Latin-1 when the
    bytes hold almost no control characters."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    if data.startswith(_BINARY_MAGIC):
        return None
    head = data[:8192]
    if len(head) >= 4 and b"\x00" in head:
        odd, even = head[1::2].count(0), head[0::2].count(0)
        if odd > len(head) * 0.4 and even == 0:
            return "utf-16-le"
        if even > len(head) * 0.4 and odd == 0:
            return "utf-16-be"
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        controls = sum(b < 0x20 and b not in b"\t\n\r\f\b\x1b" for b in head)
        return "latin-1" if controls * 100 <= len(head) else None
    return "utf-8"


def redact_file(content: bytes | str) -> bytes:
    """File content as it may leave: text in any encoding decoded, redacted and encoded back the
    same way (BOM included); binary content (a PNG chart) unchanged, byte for byte."""
    if isinstance(content, str):
        return redact(content).encode()
    encoding = _text_encoding(content)
    if encoding is None:
        return content
    bom = _bom(encoding, content)
    codec = _bomless(bom) if encoding in ("utf-16", "utf-32") else encoding.removesuffix("-sig")
    body = content[len(bom) :]
    try:
        text = body.decode(codec)
    except UnicodeDecodeError:  # damaged text, or binary that looks like text: keep it whole unless
        text = body.decode(codec, errors="replace")  # there is something to redact in it
    clean = redact(text)
    if clean == text:
        return content
    return bom + clean.encode(codec, errors="replace")


def _bom(encoding: str, content: bytes) -> bytes:
    """The byte order mark `content` starts with, for an encoding found from one."""
    size = {"utf-8-sig": 3, "utf-16": 2, "utf-32": 4}.get(encoding, 0)
    return content[:size]


def _bomless(bom: bytes) -> str:
    return {
        codecs.BOM_UTF32_LE: "utf-32-le",
        codecs.BOM_UTF32_BE: "utf-32-be",
        codecs.BOM_UTF16_LE: "utf-16-le",
        codecs.BOM_UTF16_BE: "utf-16-be",
    }[bom]
