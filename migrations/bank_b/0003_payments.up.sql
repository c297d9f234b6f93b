CREATE SCHEMA payments;
REVOKE ALL ON SCHEMA payments FROM PUBLIC;

-- Account IDs refer to ledger.accounts by value: the payment service has no privilege on
-- the ledger's tables and moves money only by asking the ledger service.
CREATE TABLE payments.payments (
    id                    uuid PRIMARY KEY,
    tenant                text NOT NULL DEFAULT 'bank-b' CHECK (tenant = 'bank-b'),
    requested_by          uuid NOT NULL,
    idempotency_key       text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    from_account          uuid NOT NULL,
    to_account            uuid NOT NULL CHECK (to_account <> from_account),
    amount                bigint NOT NULL CHECK (amount > 0),
    currency              char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reference             text NOT NULL DEFAULT '' CHECK (length(reference) <= 140),
    status                text NOT NULL CHECK (status IN ('pending', 'posted', 'rejected')),
    failure               text NOT NULL DEFAULT '' CHECK (length(failure) <= 200),
    ledger_transaction_id uuid,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payments_requested_by_idx ON payments.payments (requested_by, created_at, id);

-- One row per (principal, Idempotency-Key). The first response, failures included, is kept
-- until expires_at, which the CHECK holds to at least 24 hours after creation.
CREATE TABLE payments.idempotency_keys (
    principal       uuid NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea NOT NULL CHECK (length(request_hash) = 32),
    payment_id      uuid NOT NULL,
    state           text NOT NULL CHECK (state IN ('in_progress', 'completed')),
    locked_until    timestamptz,
    response_status integer,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (principal, key),
    CHECK (expires_at >= created_at + interval '24 hours'),
    CHECK ((state = 'completed') = (response IS NOT NULL AND response_status IS NOT NULL))
);
CREATE INDEX idempotency_keys_expires_idx ON payments.idempotency_keys (expires_at);

GRANT USAGE ON SCHEMA payments TO payment_svc;
GRANT SELECT, INSERT, UPDATE (status, failure, ledger_transaction_id, updated_at)
    ON payments.payments TO payment_svc;
GRANT SELECT, INSERT, UPDATE, DELETE ON payments.idempotency_keys TO payment_svc;
