CREATE SCHEMA accounts;
REVOKE ALL ON SCHEMA accounts FROM PUBLIC;

-- owner_id refers to users.users by value only: each service owns its schema, and the
-- account service holds no privilege on the user service's table.
CREATE TABLE accounts.accounts (
    id         uuid PRIMARY KEY,
    tenant     text NOT NULL DEFAULT 'bank-a' CHECK (tenant = 'bank-a'),
    owner_id   uuid NOT NULL,
    name       text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    currency   char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance    bigint NOT NULL DEFAULT 0
               CONSTRAINT accounts_not_overdrawn CHECK (balance >= 0),
    opened_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner_id, name)
);
CREATE INDEX accounts_owner_idx ON accounts.accounts (owner_id, opened_at, id);

-- Opening an account may name it and pick its currency, but never set its balance,
-- tenant or opening time: those columns keep their defaults.
GRANT USAGE ON SCHEMA accounts TO account_svc;
GRANT SELECT, INSERT (id, owner_id, name, currency) ON accounts.accounts TO account_svc;
