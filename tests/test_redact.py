"""Nothing sensitive reaches Slack: the redactor on a corpus of real-looking lines, and the
Slack gateway applying it to every outgoing message."""

from __future__ import annotations

import asyncio

import pytest

from bot.blocks import Message
from bot.redact import luhn_valid, redact
from bot.slack import SlackGateway, make_client
from sandbox.slack_api import SlackApiStub

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTQyIiwiaWF0IjoxNzAwMDAwMDAwfQ.c2lnbmF0dXJlLWJ5dGVz"
)

SENSITIVE = [
    ("charge ok card=4111111111111111 amount=12.50", "4111111111111111"),
    ("card 4111 1111 1111 1111 declined", "4111 1111 1111 1111"),
    ("pan 5500-0000-0000-0004 exp 12/29", "5500-0000-0000-0004"),
    ("amex 378282246310005", "378282246310005"),
    ("maestro 6759649826438453 (19-digit ok) 6011000990139424", "6011000990139424"),
    (f"auth header=Bearer {JWT}", JWT),
    (f"token issued {JWT} for user 42", JWT),
    ("Authorization: Bearer abcDEF0123456789xyz", "abcDEF0123456789xyz"),
    ("connecting with password=hunter2!", "hunter2!"),
    ('config {"secret": "topsecretvalue"}', "topsecretvalue"),
    ("DATABASE_URL=postgres://payflow:Sup3rS3cret@postgres-0:5432/payflow", "Sup3rS3cret"),
    ("amqp://guest:guestpass@rabbitmq:5672/", "guestpass"),
    ("slack token xoxb-1234567890-abcdefghij leaked", "xoxb-1234567890-abcdefghij"),
]

HARMLESS = [
    "order 4111111111111112 not a card (Luhn fails)",
    "txn id 1234567890123 took 12 ms",
    "2026-11-26T09:00:00Z INFO GET /health 200 3ms",
    "request_id=550e8400-e29b-41d4-a716-446655440000 user_id=1234567",
    "amount 1500000 cents; phone +1 415 555 0100",
    "ts 1764147600.000200 rv 1234567",
]


@pytest.mark.parametrize(("line", "secret"), SENSITIVE)
def test_sensitive_values_are_removed(line, secret):
    out = redact(line)
    assert secret not in out
    assert "[REDACTED" in out


@pytest.mark.parametrize("line", HARMLESS)
def test_ordinary_numbers_are_untouched(line):
    assert redact(line) == line


def test_luhn():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_gateway_redacts_everything_it_posts():
    with SlackApiStub(bot_token="xoxb-t") as stub:
        gateway = SlackGateway(make_client("xoxb-t", stub.api_url))
        message = Message(
            "card 4111 1111 1111 1111",
            [{"type": "section", "text": {"type": "mrkdwn", "text": f"jwt {JWT} password=pw1"}}],
        )

        async def go() -> None:
            ref = await gateway.post("#payflow-ops", message)
            await gateway.update(ref, message)
            await gateway.respond(stub.response_url("r"), message)

        asyncio.run(go())
        sent = repr([c.params for c in stub.calls]) + repr([c.params for c in stub.responses])
        assert "4111" not in sent and JWT not in sent and "pw1" not in sent
        assert sent.count("[REDACTED card]") == 3
