"""Nothing sensitive leaves: the redactor on the corpus (tests/support/redact_corpus.py), files in
any encoding, and the Slack gateway applying it to every message and upload it sends."""

from __future__ import annotations

import asyncio
import codecs
import random
import struct
import uuid
import zlib

import pytest

from bot.base.redact import luhn_valid, redact, redact_file, redact_lines, redact_payload
from bot.chat.blocks import Message
from bot.gateways.slack import SlackGateway, make_client, outgoing
from sandbox import demo
from sandbox.slack_api import SlackApiStub
from tests.support.redact_corpus import HARMLESS, JWT, PEM_BODY, SENSITIVE


def test_the_corpus_is_big_enough_to_mean_something():
    assert len(SENSITIVE) >= 100 and len(HARMLESS) >= 30


@pytest.mark.parametrize(("line", "secret"), SENSITIVE)
def test_sensitive_values_are_removed_and_a_second_pass_changes_nothing(line, secret):
    out = redact(line)
    assert secret not in out
    assert "[REDACTED" in out
    assert redact(out) == out
    assert out.count("\n") == line.count("\n")


@pytest.mark.parametrize("line", HARMLESS)
def test_harmless_lines_come_out_byte_for_byte(line):
    assert redact(line) == line


def test_a_redacted_password_keeps_the_json_around_it():
    """The old redactor ate the `}` on the second pass."""
    once = redact('{"password":"x"}')
    assert once == '{"password":"[REDACTED]"}' and redact(once) == once
    assert redact("{password=x}") == "{password=[REDACTED]}"


def test_luhn():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_a_card_number_shows_no_digit_at_all():
    """Not even the last four: with the order ID and the time next to it they identify the payment."""
    assert redact("card 4001 6307 4185 2961 declined") == "card [REDACTED card] declined"


def test_a_key_logged_line_by_line_is_redacted_across_interleaved_pods():
    lines = ["a1 INFO boot", "a1 INFO -----BEGIN OPENSSH PRIVATE KEY-----"]
    lines += [f"a1 INFO {body}" for body in PEM_BODY[:2]]
    lines += ["b2 INFO GET /health 200 3ms"]  # another pod, in the middle of the key
    lines += [f"a1 INFO {body}" for body in PEM_BODY[2:]]
    lines += ["a1 INFO -----END OPENSSH PRIVATE KEY----- loaded", "a1 INFO ready"]

    out = redact_lines(lines)

    assert len(out) == len(lines)
    assert out[0] == "a1 INFO boot" and out[-1] == "a1 INFO ready"
    assert out[-2] == "[REDACTED private key] loaded"
    assert not any(body in line for body in PEM_BODY for line in out)
    assert redact_lines(out) == out


def test_an_unclosed_key_stops_where_key_material_stops():
    text = "-----BEGIN EC PRIVATE KEY-----\n" + "\n".join(PEM_BODY) + "\nINFO [api] ready to serve traffic."
    out = redact(text).split("\n")
    assert out[-1] == "INFO [api] ready to serve traffic."
    assert set(out[:-1]) == {"[REDACTED private key]"}


def test_payload_redacts_every_string_but_structure():
    blocks = [
        {
            "type": "actions",
            "block_id": "b1",
            "elements": [{"type": "button", "action_id": "payflow:x", "value": "4111111111111111"}],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"jwt {JWT}"}},
    ]
    out = redact_payload({"channel": "C1", "ts": "1764147600.000200", "blocks": blocks})
    assert out == {
        "channel": "C1",
        "ts": "1764147600.000200",
        "blocks": [
            {
                "type": "actions",
                "block_id": "b1",
                "elements": [{"type": "button", "action_id": "payflow:x", "value": "[REDACTED card]"}],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": "jwt [REDACTED jwt]"}},
        ],
    }
    assert outgoing(Message("pan 4111111111111111")) == {"text": "pan [REDACTED card]"}


def _png(text_chunk: bytes) -> bytes:
    """A real 1×1 PNG with a tEXt chunk: bytes that must leave untouched."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    raw = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tEXt", text_chunk) + chunk(b"IDAT", raw)


LOG = "INFO card 4111 1111 1111 1111 password=hunter2 café ✓\n"


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (LOG.encode(), "utf-8"),
        (codecs.BOM_UTF8 + LOG.encode(), "utf-8-sig"),
        (codecs.BOM_UTF16_LE + LOG.encode("utf-16-le"), "utf-16"),
        (codecs.BOM_UTF16_BE + LOG.encode("utf-16-be"), "utf-16"),
        (LOG.encode("utf-16-le"), "utf-16-le"),
        (codecs.BOM_UTF32_LE + LOG.encode("utf-32-le"), "utf-32"),
        (LOG.replace("✓", "").encode("latin-1"), "latin-1"),
    ],
)
def test_text_files_in_any_encoding_are_redacted_and_keep_their_encoding(encoded, encoding):
    out = redact_file(encoded)
    text = out.decode(encoding)
    assert "4111" not in text and "hunter2" not in text
    assert "[REDACTED card]" in text and "café" in text
    assert out[:4] == encoded[:4] or not encoded.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE))
    assert redact_file(out) == out


def test_binary_files_leave_byte_for_byte():
    png = _png(b"Software\x00matplotlib 4111111111111111")
    assert redact_file(png) == png
    assert redact_file(b"\x00\x01\x02\xff" * 100) == b"\x00\x01\x02\xff" * 100


def test_gateway_redacts_everything_it_sends_and_leaves_binary_files_intact():
    png = _png(b"Comment\x00chart")
    with SlackApiStub(bot_token="xoxb-t") as stub:
        gateway = SlackGateway(make_client("xoxb-t", stub.api_url))
        message = Message(
            "card 4111 1111 1111 1111",
            [{"type": "section", "text": {"type": "mrkdwn", "text": f"jwt {JWT} password=pw1"}}],
        )

        async def go() -> None:
            ref = await gateway.post(demo.OPS_CHANNEL_ID, message)
            await gateway.update(ref, message)
            await gateway.ephemeral(demo.OPS_CHANNEL_ID, "U0ALICE", message)
            await gateway.respond(stub.response_url("r"), message)
            await gateway.upload(
                demo.OPS_CHANNEL_ID,
                "pan-4111111111111111.log",
                codecs.BOM_UTF16_LE + LOG.encode("utf-16-le"),
                title="password=pw1",
                comment="for 4111111111111111",
            )
            await gateway.upload(demo.OPS_CHANNEL_ID, "chart.png", png)

        asyncio.run(go())
        sent = repr([c.params for c in stub.calls]) + repr([c.params for c in stub.responses])
        files = list(stub.uploads.values())
    assert "4111" not in sent and JWT not in sent and "pw1" not in sent
    assert sent.count("[REDACTED card]") >= 6
    text = files[0].decode("utf-16")
    assert "4111" not in text and "hunter2" not in text and "[REDACTED card]" in text
    assert files[1] == png


BRANDS = [("4", 16), ("4", 13), ("4", 19), ("51", 16), ("2221", 16), ("2720", 16), ("34", 15), ("37", 15)]
BRANDS += [("6011", 16), ("65", 16), ("3528", 16), ("36", 14), ("62", 19), ("6759", 16), ("2200", 16)]
GLUE = [
    "",
    "PAN",
    "card=",
    "order-",
    "ref_",
    "x",
    '"pan":"',
    "%22pan%22%3A%22",
    "card_last=",
    "(",
    "\t",
    "ref9",
]


def _luhn_card(rand, prefix: str, length: int) -> str:
    body = prefix + "".join(str(rand.randrange(10)) for _ in range(length - len(prefix) - 1))
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


def _printed(rand, card: str) -> str:
    groups = (
        [card[:4], card[4:10], card[10:]] if len(card) == 15 else [card[i : i + 4] for i in range(0, 19, 4)]
    )
    groups = [g for g in groups if g]
    style = rand.choice(["", " ", "-", ".", "mixed"])
    if style == "mixed":
        return groups[0] + "".join(rand.choice(" -.") + g for g in groups[1:])
    return style.join(groups)


def test_generated_cards_in_every_shape_and_glue_never_leak():
    rand = random.Random(8)
    leaked = []
    for _ in range(3000):
        card = _luhn_card(rand, *rand.choice(BRANDS))
        printed = _printed(rand, card)
        line = f"INFO {rand.choice(GLUE)}{printed}{rand.choice(['', ' ', 'EUR', '%22', ')', ','])} done"
        out = redact(line)
        if printed in out or card in "".join(c for c in out if c.isdigit()):
            leaked.append(line)
    assert leaked == []


def test_generated_harmless_numbers_stay():
    """Luhn-invalid numbers are not glued to letters here: glued, a 15-digit Amex can hide in one
    (`order5` + `371073083792992`), so one in five hundred is redacted, a price paid knowingly."""
    rand = random.Random(9)
    changed = []
    for _ in range(3000):
        invalid = next(
            n for n in iter(lambda: str(rand.randrange(10**15, 10**16)), None) if not luhn_valid(n)
        )
        line = f"INFO {rand.choice(['order ', 'order=', 'order-', 'id: '])}{invalid} ok"
        if redact(line) != line:
            changed.append(line)
        number = rand.choice(
            [
                str(rand.randrange(1_500_000_000_000, 1_900_000_000_000)),  # epoch ms
                str(rand.randrange(1_500_000_000_000_000, 1_900_000_000_000_000)),  # epoch µs
                str(rand.randrange(1_500_000_000_000_000_000, 1_900_000_000_000_000_000)),  # epoch ns
                str(rand.randrange(10**9, 10**12)),  # order IDs of 10–12 digits
                str(uuid.UUID(int=rand.getrandbits(128))),  # found by fuzzing: 4609-8623-5417-0730 inside
                f"{rand.getrandbits(160):040x}",  # git SHA
                f"sha256:{rand.getrandbits(256):064x}",
                f"{rand.getrandbits(128):032x}",  # trace ID
            ]
        )
        line = f"INFO {rand.choice(['order=', 'id ', 'ts=', 'order', 'order-', 'x_'])}{number} ok"
        if redact(line) != line:
            changed.append(line)
    assert changed == []


# Found by fuzzing (random glue of the pieces below), each once not idempotent or leaking.
FUZZ_FINDINGS = [
    "mysql -pl -p2",  # a second -p on a mysql line
    "4111111111111111-password 6",  # a card marker made a `-password` flag of what followed
    'password=Authorization:""Authorization=3',  # a header consumed the rest of its line
    "Authorization: Token abc Authorization: Token def",
    "Authorization:'2",  # the quote given back on the second pass
    "4111111111111111 2a4111111111111111",  # a hex-ID check that looked across a space
    "7\u200b4111111111111111a4111111111111111",
    "4111111111111111_14111111111111111",  # a card glued by `_` inside a digit run
    "mysql -p1\t_84111111111111111",
    '%password="4111111111111111%22',  # a marker's space cut a URL-encoded token
    "Authorization:4111111111111111Authorization:\udcff%47",  # lone surrogate re-encoded
]
PIECES = [
    *"0123456789 -._+%=:;^?\"'<>&/\\{}[]()\n\tBDaAxXpP",
    "%22", "%3A", "%B", "\udcff", "İ", "４", "\u00a0", "\u200b", "password=", "Authorization: ",
    "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", "eyJ", "://", "@", "4111111111111111",
    "&quot;", "&lt;", "--password ", "mysql -p", "\x00", "\r",
]  # fmt: skip


@pytest.mark.parametrize("text", FUZZ_FINDINGS)
def test_fuzzing_findings_are_redacted_once_and_for_all(text):
    out = redact(text)
    assert redact(out) == out and out.count("\n") == text.count("\n")
    assert "4111111111111111" not in out and "def" not in out.split("Token")[-1]


def test_random_glue_is_idempotent_keeps_lines_and_never_raises():
    rand = random.Random(20)
    for _ in range(3000):
        text = "".join(rand.choice(PIECES) for _ in range(rand.randrange(60)))
        out = redact(text)
        assert redact(out) == out, text
        assert out.count("\n") == text.count("\n"), text


def test_damaged_text_files_never_raise_and_stay_whole_unless_something_is_redacted():
    lone_surrogate, odd_byte = b"\x00\xd8", b"\xd0"
    damaged = codecs.BOM_UTF16_LE + "ok ".encode("utf-16-le") + lone_surrogate + odd_byte
    assert redact_file(damaged) == damaged
    with_card = (
        codecs.BOM_UTF16_LE + lone_surrogate + "card 4111111111111111 ok".encode("utf-16-le") + odd_byte
    )
    out = redact_file(with_card).decode("utf-16", errors="replace")
    assert "4111" not in out and "card [REDACTED card] ok" in out
    rand = random.Random(21)
    for _ in range(2000):
        data = bytes(rand.randrange(256) for _ in range(rand.randrange(80)))
        for variant in (data, codecs.BOM_UTF16_LE + data, b"\x00" + data, data.replace(b"\x00", b"")):
            redact_file(variant)


@pytest.mark.parametrize("card", ["4001630741852961", "4001 6307 4185 2961", "4001-6307-4185-2961"])
def test_a_cut_at_any_length_never_keeps_part_of_a_card(card):
    """Every length bound cuts through `clip`: wherever the cut falls, what is left holds no run
    of the card's digits the redactor would have to guess at (here: no more than 4 of them)."""
    from bot.base.redact import clip

    digits = card.replace(" ", "").replace("-", "")
    for text in (f"declined {card} at the till", f"PAN{card}x", f"pod={card}"):
        for limit in range(len(text) + 1):
            for tail in ("", "…"):
                out = redact(clip(text, limit, tail))
                assert len(out) <= max(limit, len(redact(text)))
                run = "".join(c for c in out if c.isdigit())
                assert digits[:5] not in run, (text, limit, out)
    assert clip("order 1234567890 shipped", 100) == "order 1234567890 shipped"
    assert clip("order 1234567890 shipped", 12, "…") == "order…"
