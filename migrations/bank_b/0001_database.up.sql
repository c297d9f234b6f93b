-- Only this tenant's service roles may connect: a bank-a role is refused at connect time.
REVOKE ALL ON DATABASE bank_b FROM PUBLIC;
GRANT CONNECT ON DATABASE bank_b TO payment_svc, ledger_svc;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
