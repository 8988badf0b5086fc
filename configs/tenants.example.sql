-- Example for an ISV: one application, admin-consented in many customer
-- tenants, each customer's users in one shared table. A template job
-- (configs/isv-tenants.example.yaml: tenants_from: isv.tenants) runs once
-- per enabled row of isv.tenants, as "<template>@<name>", reading only the
-- rows of isv.desired_users whose tenant_scope equals the row's scope.
--
-- Adding a customer is an INSERT; `worker run` picks it up within
-- tenants.refresh (default 1m) or at SIGHUP, without a restart. Setting
-- enabled = false stops its runs (a run in progress finishes); its links and
-- history stay. Until the customer's administrator opens the admin-consent
-- URL, its runs fail at sign-in and `worker tenants` shows the URL to send;
-- the other customers are not held up.

CREATE SCHEMA IF NOT EXISTS isv;

-- One row per customer tenant. Columns read by the worker:
--   tenant_id        the customer's tenant id (uuid or text: GUID or verified domain)
--   name             short name, ^[a-z0-9][a-z0-9_-]*$ (<= 63): the job is isv@<name>
--   enabled          false (or NULL): no runs
--   scope            the value of isv.desired_users.tenant_scope for its users
--   allowed_domains  optional: the UPN domains the job may write in that
--                    tenant (NULL: the template's allowed_domains)
CREATE TABLE IF NOT EXISTS isv.tenants (
    tenant_id       uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    enabled         boolean NOT NULL DEFAULT true,
    scope           text NOT NULL UNIQUE,
    allowed_domains text[],
    onboarded_at    timestamptz NOT NULL DEFAULT now()   -- the worker ignores other columns
);

-- The shared source: the desired-users contract (see
-- desired_users.example.sql) plus tenant_scope. An external_id is unique
-- within a tenant, not across them.
CREATE TABLE IF NOT EXISTS isv.desired_users (
    tenant_scope        text NOT NULL,
    external_id         text NOT NULL CHECK (external_id <> ''),
    user_principal_name text,
    display_name        text,
    mail_nickname       text,
    given_name          text,
    surname             text,
    job_title           text,
    department          text,
    office_location     text,
    company_name        text,
    employee_id         text,
    employee_type       text,
    usage_location      text,
    mobile_phone        text,
    account_enabled     boolean NOT NULL DEFAULT true,
    manager_external_id text,
    groups              text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_scope, external_id)
);

-- Onboarding a customer:
--   INSERT INTO isv.tenants (tenant_id, name, scope, allowed_domains)
--   VALUES ('8f2c…', 'fabrikam', 'fabrikam', '{fabrikam.com}');
-- then send its administrator the URL `worker tenants` prints for isv@fabrikam.
-- Offboarding: UPDATE isv.tenants SET enabled = false WHERE name = 'fabrikam';
