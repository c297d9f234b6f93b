CREATE SCHEMA ledger;
REVOKE ALL ON SCHEMA ledger FROM PUBLIC;

-- A customer account is never overdrawn. A system account (the source of opening balances)
-- may go negative, so the sum of all balances in a currency is always zero.
CREATE TABLE ledger.accounts (
    id         uuid PRIMARY KEY,
    tenant     text NOT NULL DEFAULT 'bank-b' CHECK (tenant = 'bank-b'),
    owner_id   uuid,
    kind       text NOT NULL DEFAULT 'customer' CHECK (kind IN ('customer', 'system')),
    name       text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,31}$'),
    currency   char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    balance    bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_not_overdrawn CHECK (kind = 'system' OR balance >= 0),
    CHECK ((kind = 'customer') = (owner_id IS NOT NULL)),
    UNIQUE (owner_id, name),
    UNIQUE (id, currency)
);

CREATE TABLE ledger.transactions (
    id          uuid PRIMARY KEY,
    -- reference is unique so the same business event (a payment ID) posts at most once.
    reference   text NOT NULL UNIQUE CHECK (length(reference) BETWEEN 1 AND 200),
    description text NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- amount is signed: positive credits the account, negative debits it. The composite key
-- makes an entry's currency always the account's currency.
CREATE TABLE ledger.entries (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id uuid NOT NULL REFERENCES ledger.transactions (id),
    account_id     uuid NOT NULL,
    currency       char(3) NOT NULL,
    amount         bigint NOT NULL CHECK (amount <> 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (account_id, currency) REFERENCES ledger.accounts (id, currency)
);
CREATE INDEX entries_account_idx ON ledger.entries (account_id, id);
CREATE INDEX entries_transaction_idx ON ledger.entries (transaction_id);

-- Balances change only through entries: this trigger runs with the owner's rights, and the
-- service role has no UPDATE on accounts, so balance always equals the sum of entries.
CREATE FUNCTION ledger.apply_entry() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    UPDATE ledger.accounts SET balance = balance + NEW.amount WHERE id = NEW.account_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER entries_apply AFTER INSERT ON ledger.entries
    FOR EACH ROW EXECUTE FUNCTION ledger.apply_entry();

-- Checked at commit, when all of a transaction's entries are in: at least two entries and a
-- zero sum per currency. A violation aborts the whole database transaction.
CREATE FUNCTION ledger.check_balanced(tx uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
    IF (SELECT count(*) FROM ledger.entries WHERE transaction_id = tx) < 2
       OR EXISTS (SELECT 1 FROM ledger.entries WHERE transaction_id = tx
                  GROUP BY currency HAVING sum(amount) <> 0) THEN
        RAISE EXCEPTION 'ledger transaction % is not balanced', tx
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transaction_balanced';
    END IF;
END
$$;
CREATE FUNCTION ledger.entries_balanced() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM ledger.check_balanced(NEW.transaction_id);
    RETURN NULL;
END
$$;
CREATE FUNCTION ledger.transactions_balanced() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    PERFORM ledger.check_balanced(NEW.id);
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER entries_balanced AFTER INSERT ON ledger.entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger.entries_balanced();
CREATE CONSTRAINT TRIGGER transactions_balanced AFTER INSERT ON ledger.transactions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger.transactions_balanced();

-- The ledger is append-only for its service: no UPDATE, DELETE or TRUNCATE on any table.
-- A service-opened account is always a customer account starting at zero.
GRANT USAGE ON SCHEMA ledger TO ledger_svc;
GRANT SELECT, INSERT (id, owner_id, name, currency) ON ledger.accounts TO ledger_svc;
GRANT SELECT, INSERT ON ledger.transactions, ledger.entries TO ledger_svc;
