-- Tenants as data (issue 16).
--
-- One row per job (a template's expanded job is one customer tenant): the
-- last sign-in the worker made for it, by a run or by `worker check`, and
-- what it found. `worker tenants` lists it: which customers have consented,
-- which are broken and why. Advice is the worker's translation of the
-- failure; no token, secret or raw error body is ever stored.
CREATE TABLE entraprov.tenant_consent (
    job         text PRIMARY KEY,
    tenant_id   text NOT NULL,
    checked_at  timestamptz NOT NULL,
    checked_by  text NOT NULL CHECK (checked_by IN ('run', 'check')),
    signed_in   boolean NOT NULL,
    -- AADSTS code of a refused sign-in; NULL when signed in or unknown.
    aadsts      integer,
    granted     text[] NOT NULL DEFAULT '{}',
    missing     text[] NOT NULL DEFAULT '{}',
    consent_url text NOT NULL DEFAULT '',
    advice      text NOT NULL DEFAULT ''
);

---- create above / drop below ----

DROP TABLE IF EXISTS entraprov.tenant_consent;
