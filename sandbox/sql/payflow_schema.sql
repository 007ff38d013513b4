-- PayFlow's tables as the bot meets them in production, reduced to what its commands read
-- (users and lockouts, wallets, transactions). Deliberately NO index on transactions.created_at
-- or .status: the sandbox's "slow statements" are sequential scans, as in a real incident.
CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text        NOT NULL UNIQUE,
    password_hash   text        NOT NULL,
    full_name       text        NOT NULL,
    failed_attempts integer     NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The lockout screen and the bot's "users locked" both ask for locks still in force.
CREATE INDEX users_locked_until_idx ON users (locked_until) WHERE locked_until IS NOT NULL;

CREATE TABLE wallets (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint         NOT NULL REFERENCES users (id),
    currency   char(3)        NOT NULL,
    balance    numeric(14, 2) NOT NULL DEFAULT 0,
    created_at timestamptz    NOT NULL DEFAULT now(),
    UNIQUE (user_id, currency)
);

CREATE TABLE transactions (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wallet_id  bigint         NOT NULL REFERENCES wallets (id),
    kind       text           NOT NULL CHECK (kind IN ('payment', 'transfer', 'refund', 'topup')),
    amount     numeric(14, 2) NOT NULL CHECK (amount > 0),
    currency   char(3)        NOT NULL,
    status     text           NOT NULL CHECK (status IN ('pending', 'completed', 'failed', 'reversed')),
    reference  text           NOT NULL,
    created_at timestamptz    NOT NULL DEFAULT now()
);
