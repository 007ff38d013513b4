"""The redaction corpus: log lines as payment services write them, each sensitive one with the
value that must not survive, and harmless ones that must come out byte for byte.

Shared by tests/test_redact.py (zero leaks, zero false positives, idempotence) and
bench/redact.py (the same figures, plus throughput and a comparison with detect-secrets).
"""

from __future__ import annotations

# Luhn-valid test numbers of every scheme PCI DSS covers, as (digits, printed the usual way).
CARDS = [
    ("4111111111111111", "4111 1111 1111 1111"),  # Visa
    ("4001630741852961", "4001 6307 4185 2961"),  # Visa
    ("4222222222222", "4222 222 222 222"),  # Visa, 13 digits
    ("5300000000000006", "5300 0000 0000 0006"),  # Mastercard
    ("5555555555554444", "5555 5555 5555 4444"),  # Mastercard
    ("2223003122003222", "2223 0031 2200 3222"),  # Mastercard 2-series
    ("378282246310005", "3782 822463 10005"),  # Amex
    ("371449635398431", "3714 496353 98431"),  # Amex
    ("6011111111111117", "6011 1111 1111 1117"),  # Discover
    ("3530111333300000", "3530 1113 3330 0000"),  # JCB
    ("30569309025904", "3056 930902 5904"),  # Diners
    ("6200000000000005", "6200 0000 0000 0005"),  # UnionPay
    ("6799990100000000019", "6799 9901 0000 0000 019"),  # Maestro, 19 digits
    ("2200000000000004", "2200 0000 0000 0004"),  # Mir
]

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6InBmLTEifQ.eyJzdWIiOiJ1c2VyLTQyIiwic2NvcGUiOiJwYXkifQ.aGVsbG8tc2lnbmF0dXJl"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
PEM_BODY = [
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi6Ze2HKm2QeJYaGR5cP1C8iH3o",
    "q8w2f0Ypz5b1HZqQe4cR0jVnKQ9nL3xW7tYbA2sD4fG6hJ8kL0mN2pQ4rS6tU8vW",
    "yZ1aB3cD5eF7gH9iJ0kL2mN4oP6qR8sT0uV2wX4yZ6aB8cD0eF2gH4iJ6kL8mN0",
    "oP2qR4sT6uV8wX0yZ2aB4cD6eF8gH0iJ2kL4mN6oP8qR0sT2uV4wX6yZ8aB0cD2",
    "AbCdEf==",
]


def _pem(kind: str) -> str:
    return "\n".join([f"-----BEGIN {kind}-----", *PEM_BODY, f"-----END {kind}-----"])


def _cards() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for digits, printed in CARDS:
        dashed, dotted = printed.replace(" ", "-"), printed.replace(" ", ".")
        out += [
            (f"ERROR [wallet] charge declined card={digits} amount=42.00 EUR", digits),
            (f"INFO  [wallet] 3ds for card {printed} done", printed),
            (f"WARN  [psp] retry pan {dashed} exp 12/29", dashed),
            (f"INFO  [psp] settle {dotted} ok", dotted),
            (f"DEBUG [psp] PAN{digits} glued", digits),
            (f"INFO  [txn] order-{digits} paid", digits),
        ]
    visa = "4001630741852961"
    out += [
        ("INFO  [txn] card_last=5300000000000006EUR", "5300000000000006"),
        ("INFO  [txn] ref_4001630741852961_x", visa),
        ("INFO  [txn] mixed 4001 6307-4185.2961 separators", "4001 6307-4185.2961"),
        ("INFO  [txn] spaced 4001 - 6307 - 4185 - 2961 here", "4001 - 6307 - 4185 - 2961"),
        ("INFO  [txn] underscores 4001_6307_4185_2961", "4001_6307_4185_2961"),
        ("INFO  [form] card=4001+6307+4185+2961&amount=10", "4001+6307+4185+2961"),
        ("INFO  [txn] txn 42 4111 1111 1111 1111 declined", "1111 1111 1111"),
        ("INFO  [txn] fixed-width 0004001630741852961 rec", visa),
        ("INFO  [txn] glued to a word and a digit ref794001630741852961", visa),
        ("INFO  [txn] tab\t4001630741852961\tsep", visa),
        ("INFO  [api] GET /pay?card_number=4001630741852961&cvv=123", visa),
        ('INFO  [api] body {"pan":"4001630741852961","cvv":"123"}', visa),
        ('INFO  [api] body {"card": {"number": "4001 6307 4185 2961"}}', "4001 6307 4185 2961"),
        ("INFO  [api] %22pan%22%3A%224001630741852961%22", visa),
        ("INFO  [api] q=%7B%22card%22%3A%224111111111111111%22%7D", "4111111111111111"),
        ("INFO  [api] double %2522pan%2522%253A%25224001630741852961%2522", visa),
        ("INFO  [api] spaces 4001%206307%204185%202961 encoded", "4001%206307%204185%202961"),
        ("INFO  [xml] <CardNumber>4001630741852961</CardNumber>", visa),
        ("INFO  [html] &quot;pan&quot;:&quot;4001630741852961&quot;", visa),
        ('INFO  [esc] {\\"pan\\":\\"4001630741852961\\"}', visa),
        ("INFO  [txn] amex 3782-822463-10005 ok", "3782-822463-10005"),
        (
            "INFO  [txn] fullwidth ４００１ ６３０７ ４１８５ ２９６１ digits",
            "４００１ ６３０７ ４１８５ ２９６１",
        ),
        (
            "INFO  [txn] no-break 4001\u00a06307\u00a04185\u00a02961 spaces",
            "4001\u00a06307\u00a04185\u00a02961",
        ),
        ("INFO  [txn] en dash 4001–6307–4185–2961 and zero-width 4001\u200b6307418529 61", "6307–4185"),
        ("INFO  [txn] zero-width 4001\u200b6307\u200b4185\u200b2961", "4185\u200b2961"),
    ]
    return out


def _tracks() -> list[tuple[str, str]]:
    return [
        ("DEBUG [pos] swipe %B4001630741852961^DOE/JOHN^2512101000000000000000?", "DOE/JOHN^2512101"),
        ("DEBUG [pos] swipe %B4001630741852961^DOE/JOHN^2512101000000000000000?", "4001630741852961"),
        ("DEBUG [pos] t1=B5300000000000006^SMITH/ANNA M^2712201123456789?", "2712201123456789"),
        ("DEBUG [pos] track2 ;4001630741852961=25121010000000000000?", "25121010000000000000"),
        ("DEBUG [pos] track2 ;4001630741852961=25121010000000000000?", "4001630741852961"),
        ("DEBUG [pos] raw 5300000000000006=27122011234567890", "27122011234567890"),
    ]


def _credentials() -> list[tuple[str, str]]:
    return [
        (f"DEBUG [gw] upstream headers Authorization: Bearer {JWT}", JWT),
        (f"INFO  [auth] session jwt={JWT} user=42", JWT),
        (f"INFO  [auth] token issued {JWT}", JWT),
        ("DEBUG [gw] Authorization: Token 9f8e7d6c5b4a39281706", "9f8e7d6c5b4a39281706"),
        ("DEBUG [gw] authorization: token abcDEF0123456789xyz", "abcDEF0123456789xyz"),
        ("WARN  [psp] Authorization: Basic cGF5ZmxvdzpodW50ZXIy", "cGF5ZmxvdzpodW50ZXIy"),
        (
            'DEBUG [gw] Authorization: Digest username="bob", response="6629fae49393a05397450978507c4ef1"',
            "6629fae4",
        ),
        (
            "DEBUG [gw] Authorization: AWS4-HMAC-SHA256 Credential=AKID/2026, Signature=fe5f80f77d5fa3",
            "fe5f80f7",
        ),
        (
            "DEBUG [gw] Proxy-Authorization: Negotiate YIIGhgYJKoZIhvcSAQICAQBuggZ1",
            "YIIGhgYJKoZIhvcSAQICAQBuggZ1",
        ),
        ('DEBUG [gw] headers {"Authorization": "ApiKey s3cr3t-v4lue-123"}', "s3cr3t-v4lue-123"),
        ("DEBUG [gw] Authorization: xyzzy-custom-credential", "xyzzy-custom-credential"),
        ("ERROR [auth] login failed user=bob password=hunter2!", "hunter2!"),
        ("ERROR [auth] login failed user=bob pass=hunter2", "hunter2"),
        ('INFO  [cfg] settings {"db_password": "Sup3rS3cret", "region": "eu"}', "Sup3rS3cret"),
        ("INFO  [cfg] DB_PASSWORD=Sup3rS3cret", "Sup3rS3cret"),
        ("INFO  [cfg] SECRET_KEY_BASE=9a8b7c6d5e4f3a2b1c0d", "9a8b7c6d5e4f3a2b1c0d"),
        ('INFO  [cfg] {"password_hash": "$2b$12$abcdefghijklmnopqrstuv"}', "$2b$12$abcdefghij"),
        ("INFO  [sql] CREATE USER app IDENTIFIED BY 'S3cret!pw'", "S3cret!pw"),
        ("WARN  [http] retry with Basic cGF5ZmxvdzpodW50ZXIy", "cGF5ZmxvdzpodW50ZXIy"),
        ("INFO  [cfg] redis_password: 'r3d1s pass'", "r3d1s pass"),
        ("INFO  [cfg] {'api_key': 'k-123456789'}", "k-123456789"),
        ("INFO  [cfg] client_secret=abc123def456", "abc123def456"),
        ("INFO  [cfg] map[password:hunter2 user:bob]", "hunter2"),
        ('INFO  [cfg] {"password":"x"}', '"x"'),
        ("INFO  [cfg] opts password => 'rubypass'", "rubypass"),
        ('INFO  [cfg] {"password": "unterminated', "unterminated"),
        ("INFO  [cfg] x-api-key: 0a1b2c3d4e5f", "0a1b2c3d4e5f"),
        ("INFO  [cfg] cardPin=4321 userPass=topsecret", "topsecret"),
        ("INFO  [cfg] cardPin=4321 userPass=topsecret", "Pin=4321"),
        ("INFO  [cfg] csrf_token=Zm9vYmFyYmF6", "Zm9vYmFyYmF6"),
        ("INFO  [api] POST /login body=username=bob&password=hunter2&remember=1", "hunter2"),
        ("INFO  [3ds] GET /3ds/return?token=tok_live_abc123&status=ok 302", "tok_live_abc123"),
        ("INFO  [api] %22password%22%3A%22p%40ssw0rd%22", "p@ssw0rd"),
        ("INFO  [api] %22password%22%3A%22p%40ssw0rd%22", "p%40ssw0rd"),
        ("INFO  [pay] cvv=123 exp=12/29", "cvv=123"),
        ('INFO  [pay] {"cvc": "9876"}', '"9876"'),
        ("INFO  [pay] security_code: 321", "code: 321"),
        ("INFO  [pay] pin_block=0412AC89ABCDEF12", "0412AC89ABCDEF12"),
        ("INFO  [job] exec migrate --password hunter2 --verbose", "hunter2"),
        ("INFO  [job] exec psql --db-password 'S3cret!' -h db", "S3cret!"),
        ("INFO  [job] exec tool --api-token=abcdef123456", "abcdef123456"),
        ("INFO  [job] exec mysql -u root -pS3cretPw payments", "S3cretPw"),
        ("INFO  [job] exec sshpass -p S3cretPw ssh host", "S3cretPw"),
        ("INFO  [soap] <Password>hunter2</Password>", "hunter2"),
        ("INFO  [soap] <ns1:ApiToken type='x'>tkn-998877</ns1:ApiToken>", "tkn-998877"),
        ("INFO  [soap] &lt;Password&gt;hunter2&lt;/Password&gt;", "hunter2"),
        ("INFO  [soap] <CVV2>123</CVV2>", ">123<"),
        ("INFO  [http] Cookie: session=9a8b7c6d5e4f; theme=dark", "9a8b7c6d5e4f"),
        ("INFO  [http] Set-Cookie: sid=QWxhZGRpbjpvcGVu; HttpOnly", "QWxhZGRpbjpvcGVu"),
        ("ERROR [db] connect postgres://payflow:Sup3rS3cret@postgres-0:5432/payflow failed", "Sup3rS3cret"),
        ("WARN  [cache] redis://:r3disPass@redis:6379/0 timeout", "r3disPass"),
        ("WARN  [mq] amqp://guest:gu@st@rabbitmq:5672/", "gu@st"),
        ("WARN  [http] fetching https://bob:pa55word@internal.example/api", "pa55word"),
        ("INFO  [slack] token xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp", "xoxb-1234567890"),
        ("INFO  [slack] xoxp-1234567890-1234567890-abcdefabcdef", "xoxp-1234567890"),
        ("INFO  [slack] app token xapp-1-A0123456789-1234567890123-abcdef0123456789", "xapp-1-A0123456789"),
        ("INFO  [slack] refresh xoxe-1-My0xLTEyMzQ1Njc4OTAtYWJj", "xoxe-1-My0xLTEy"),
        (
            "INFO  [slack] post https://hooks.slack.com/services/T0ABC1234/B0DEF5678/AbCdEfGhIjKlMnOpQrStUvWx",
            "AbCdEfGhIjKlMnOpQrStUvWx",
        ),
        (
            "INFO  [slack] post https://hooks.slack.com/services/T0ABC1234/B0DEF5678/AbCdEfGhIjKlMnOpQrStUvWx",
            "B0DEF5678",
        ),
        ("INFO  [slack] workflow https://hooks.slack.com/workflows/T0ABC/A0DEF/123456/xYz9AbC", "xYz9AbC"),
        ("DEBUG [psp] X-Api-Key: sk_live_51Habc123", "sk_live_51Habc123"),
        ("DEBUG [psp] using sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("DEBUG [psp] restricted rk_live_51Habcdefghij0123", "rk_live_51Habcdefghij0123"),
        ("DEBUG [psp] test key sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"),
        ("DEBUG [cfg] webhook secret: whsec_abc123xyz", "whsec_abc123xyz"),
        (
            "DEBUG [cfg] signing whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        ("INFO  [s3] AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENG", "wJalrXUtnFEMIK7MDENG"),
        ("INFO  [s3] using key AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
        ("INFO  [s3] sts ASIAY34FZKBOKMUTVV7A session", "ASIAY34FZKBOKMUTVV7A"),
        (f"INFO  [s3] credentials AKIAIOSFODNN7EXAMPLE {AWS_SECRET}", AWS_SECRET),
        (f'INFO  [s3] {{"SecretAccessKey": "{AWS_SECRET}"}}', AWS_SECRET),
        (f"INFO  [s3] aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
        ("INFO  [ci] ghp_1234567890abcdefghijklmnopqrstuvwxyz", "ghp_1234567890abcdef"),
        ("INFO  [ci] github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123", "github_pat_11ABCDEFG"),
        ("INFO  [ci] glpat-AbCdEf0123456789xYzW", "glpat-AbCdEf0123456789xYzW"),
        (
            "INFO  [gcp] key AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        ),
        ("INFO  [gcp] access ya29.a0AfH6SMBx1234567890abcdefghij", "ya29.a0AfH6SMBx1234567890"),
        ("INFO  [gcp] oauth GOCSPX-1234567890abcdefghijklmnop", "GOCSPX-1234567890abcdef"),
        ("INFO  [npm] npm_abcdefghijklmnopqrstuvwxyz0123456789", "npm_abcdefghijklmnop"),
        ("INFO  [mail] SG.abcdefghijklmnop_q.rstuvwxyzABCDEFGHIJKLMNOPQRSTU", "SG.abcdefghijklmnop_q"),
        ("INFO  [sq] sq0atp-ABCDEFGHIJKLMNOPQRSTUV", "sq0atp-ABCDEFGHIJKLMNOPQRSTUV"),
    ]


def _keys() -> list[tuple[str, str]]:
    pem_lines = [
        (f"INFO  [boot] loaded key {_pem(kind)}", PEM_BODY[1])
        for kind in ("RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY")
    ]
    escaped = "\\n".join(["-----BEGIN PRIVATE KEY-----", *PEM_BODY, "-----END PRIVATE KEY-----"])
    return [
        *pem_lines,
        (f"INFO  [boot] loaded key {_pem('ENCRYPTED PRIVATE KEY')}", PEM_BODY[3]),
        (f"INFO  [boot] loaded key {_pem('PGP PRIVATE KEY BLOCK')}", PEM_BODY[0]),
        (f'INFO  [gcp] {{"type": "service_account", "private_key": "{escaped}"}}', PEM_BODY[2]),
        # a key logged line by line, each line with its own prefix, and never closed
        (
            "\n".join(
                ["2026-11-26T09:00:00Z INFO dumping -----BEGIN RSA PRIVATE KEY-----"]
                + [f"2026-11-26T09:00:00Z INFO {line}" for line in PEM_BODY]
            ),
            PEM_BODY[4],
        ),
        (f"INFO  [boot] stray key line {PEM_BODY[0]}", PEM_BODY[0]),
    ]


SENSITIVE: list[tuple[str, str]] = _cards() + _tracks() + _credentials() + _keys()

HARMLESS: list[str] = [
    "INFO  [txn] order 4111111111111112 settled",  # 16 digits, fails the Luhn check
    "INFO  [txn] order 4001630741852962 refunded",
    "INFO  [txn] ref 5300-0000-0000-0007 not a card",
    "INFO  [txn] txn 1234567890123 took 12 ms",
    "INFO  [txn] order_id=123456789012 merchant_id=4242424242",
    "INFO  [txn] order ids 1234567890, 12345678901, 987654321098",
    "INFO  [api] GET /api/v1/payments/550e8400-e29b-41d4-a716-446655440000 200 3ms",
    "INFO  [api] amount=1500000 cents merchant=4242 phone +1 415 555 0100",
    "INFO  [batch] 20261126 processed 1048576 rows in 1764147600 ms",
    "INFO  [batch] started_at=1764147600123 finished_at=1764147612456",
    "INFO  [batch] epoch_us=1764147600123456 epoch_ns=1764147600123456789",
    "INFO  [batch] compact stamp 20261126090000123 and 20261126090000",
    "2026-11-26T09:00:00Z INFO GET /health 200 3ms",
    "2026-11-26T09:00:00.123456789Z INFO [api] 2026-11-26 09:00:00,123 request done",
    "INFO  [api] ts 1764147600.000200 rv 1234567",
    "WARN  [auth] password reset requested for user_id=1234567",
    "INFO  [llm] max_tokens=100 retries=3 tokens_used=42",
    "INFO  [db] postgres://payflow@postgres-0:5432/payflow pool=10",
    "INFO  [net] peer 10.0.0.10:8080 and 192.168.100.200 and fe80::1ff:fe23:4567:890a",
    "INFO  [boot] payflow v1.2.3 build 2026.11.26.1 (go1.22.4) api v10.20.30-rc.1",
    "INFO  [trace] traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "INFO  [trace] trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 span=charge",
    "INFO  [trace] x-amzn-trace-id=Root=1-5759e988-bd862e3fe1be46a994272793",
    "INFO  [k8s] pod api-gateway-blue-7d9f8b6c5-x2k9p restarted (hash 7d9f8b6c5)",
    "INFO  [k8s] replicaset wallet-service-green-5c8d7f9b4 scaled to 3",
    "INFO  [git] deployed 9fceb02d0ae598e95dc970b74767f19372d61af8 (9fceb02)",
    "INFO  [img] ghcr.io/payflow/api@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "INFO  [pay] card ending 2961 brand=visa exp=12/29 cvv_check=pass",
    "INFO  [pay] masked 411111******1111 and ************2961",
    "INFO  [pay] token_type=bearer scope=payments expires_in=3600",
    "INFO  [api] GET /search?q=caf%C3%A9&page=2 200",
    "INFO  [api] cpu 95% mem 80%",
    "INFO  [api] the bearer of bad news; a basic question about passwords",
    "INFO  [cfg] secretName: payflow-db tokenizer=bpe password_policy=strong",
    "INFO  [ulid] 01ARZ3NDEKTSV4RRFFQ69G5FAV queued",
    "INFO  [cert] -----BEGIN CERTIFICATE----- is public",
    "INFO  [api] /api/v1/Merchants/Settlement/Reports/Daily2026/Export/Summary",
    "INFO  [iban] DE89370400440532013000 transfer queued",
    "INFO  [geo] lat=52.520008 lon=13.404954",
    "INFO  [seq] 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16",
    "INFO  [i18n] café ✓ commande ４１１１１１１１１１１１１１１２ réglée",  # fullwidth, Luhn fails
    "INFO  [docs] basic information about passwords and basic authentication",
    "INFO  [cfg] password_policy=strong token_ttl=3600 secret_name=payflow-db",
]
