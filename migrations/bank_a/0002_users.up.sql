CREATE SCHEMA users;
REVOKE ALL ON SCHEMA users FROM PUBLIC;

-- tenant is pinned by a CHECK: the database already belongs to one tenant, and the column
-- makes a row carry its tenant into every query result and policy input.
CREATE TABLE users.users (
    id           uuid PRIMARY KEY,
    tenant       text NOT NULL DEFAULT 'bank-a' CHECK (tenant = 'bank-a'),
    username     text NOT NULL UNIQUE CHECK (length(username) BETWEEN 3 AND 254),
    display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    role         text NOT NULL CHECK (role IN ('customer', 'staff')),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The user service only looks people up; users are created by the seed step (or, in a
-- real bank, by onboarding), never by the service.
GRANT USAGE ON SCHEMA users TO user_svc;
GRANT SELECT ON users.users TO user_svc;
