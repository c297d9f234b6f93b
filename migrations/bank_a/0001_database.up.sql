-- Only this tenant's service roles may connect: a bank-b role is refused at connect time.
REVOKE ALL ON DATABASE bank_a FROM PUBLIC;
GRANT CONNECT ON DATABASE bank_a TO user_svc, account_svc;
-- Nobody but the owner creates or looks up objects in public.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
