-- Example source view: map an HR system's table onto the desired-users
-- contract of entraprov. SQL is the mapping language: scoping is a WHERE
-- clause, attribute rules are expressions, lookups are joins. Point a job at
-- the view with `source: hr.entra_users`; `worker check` verifies its
-- columns and types.
--
-- Contract (names and types checked by the worker; NULL = "no value wanted"):
--   external_id text (unique, never reused), user_principal_name,
--   display_name, mail_nickname (NULL: derived from the UPN), given_name,
--   surname, job_title, department, office_location, company_name,
--   employee_id, employee_type, usage_location (ISO 3166 alpha-2),
--   mobile_phone, account_enabled boolean, manager_external_id,
--   groups text[] (group object ids).
-- Optional profile columns (schema 7; the attribute reference in README
-- gives each one's Graph property and limits): employee_hire_date and
-- employee_leave_date_time (timestamptz), division, cost_center,
-- street_address, city, state, postal_code, country, business_phones
-- (text[], one number), fax_number, other_mails (text[]),
-- preferred_language (ll-CC), extension_attribute_1 … _15.
--
-- Ownership: the job manages exactly the attributes the view has a column
-- for; a column left out is left to others (never read, written or
-- cleared). Of the 13 first attributes, a present column's NULL clears the
-- property. An optional profile column is managed only once at least one
-- row fills it (then its NULL clears too); NULL in every row, it is left
-- alone, so a SELECT * view over entraprov.desired_users manages nothing
-- new until the columns are filled.
--
-- A person who drops out of the view (scoped out, or deleted in HR) is a
-- leaver: the job disables (or deletes, per its leaver policy) the account
-- it created, and never touches accounts it does not manage.
-- A person still in the view with account_enabled = false (on leave) is not
-- a leaver: the account is disabled and kept, whatever the leaver policy
-- (never deleted, even with leaver.action delete), and enabled again when
-- account_enabled turns true.

CREATE SCHEMA IF NOT EXISTS hr;

-- The HR system's own table (normally filled by its export or an ETL job).
CREATE TABLE IF NOT EXISTS hr.employees (
    employee_number  integer PRIMARY KEY,
    first_name       text NOT NULL,
    preferred_name   text,
    last_name        text NOT NULL,
    email_alias      text,              -- chosen alias, if any
    title            text,
    org_unit         text,              -- e.g. 'FIN-AP'
    site_code        text,              -- e.g. 'PAR1'
    country_code     text,              -- ISO 3166 alpha-2
    mobile           text,
    contract_type    text NOT NULL,     -- 'permanent' | 'fixed-term' | 'contractor' | 'intern'
    hire_date        date NOT NULL,
    termination_date date,
    on_leave         boolean NOT NULL DEFAULT false,
    manager_number   integer REFERENCES hr.employees (employee_number)
);

-- Sites and org units: lookups that become attributes and group memberships.
CREATE TABLE IF NOT EXISTS hr.sites (
    site_code   text PRIMARY KEY,
    office      text NOT NULL,           -- 'Paris – La Défense'
    street      text,                    -- '1 Place de la Défense'
    postal_code text,
    city        text
);
CREATE TABLE IF NOT EXISTS hr.org_unit_groups (
    org_unit text NOT NULL,
    group_id text NOT NULL,              -- Entra group object id
    PRIMARY KEY (org_unit, group_id)
);

CREATE OR REPLACE VIEW hr.entra_users AS
SELECT
    -- The anchor: immutable, unique, never reused. Prefixed so that ids from
    -- another HR system could share the view later.
    'E' || lpad(e.employee_number::text, 6, '0')                  AS external_id,

    -- alias@domain: the chosen alias or first.last, lower-case, accents and
    -- characters Graph refuses stripped; contractors get their own domain.
    lower(regexp_replace(
        translate(coalesce(e.email_alias,
                           coalesce(e.preferred_name, e.first_name) || '.' || e.last_name),
                  'àâäáãåçéèêëíìîïñóòôöõúùûüýÿÀÂÄÁÃÅÇÉÈÊËÍÌÎÏÑÓÒÔÖÕÚÙÛÜÝ',
                  'aaaaaaceeeeiiiinooooouuuuyyAAAAAACEEEEIIIINOOOOOUUUUY'),
        '[^A-Za-z0-9._-]', '', 'g'))
      || CASE WHEN e.contract_type = 'contractor' THEN '@ext.contoso.com'
              ELSE '@contoso.com' END                               AS user_principal_name,

    coalesce(e.preferred_name, e.first_name) || ' ' || e.last_name
      || CASE WHEN e.contract_type = 'contractor' THEN ' (EXT)' ELSE '' END
                                                                    AS display_name,
    NULL::text                                                      AS mail_nickname,  -- derived from the UPN
    coalesce(e.preferred_name, e.first_name)                        AS given_name,
    e.last_name                                                     AS surname,
    e.title                                                         AS job_title,
    split_part(e.org_unit, '-', 1)                                  AS department,     -- 'FIN-AP' -> 'FIN'
    s.office                                                        AS office_location,
    'Contoso Ltd'                                                   AS company_name,
    e.employee_number::text                                         AS employee_id,
    initcap(replace(e.contract_type, '-', ' '))                     AS employee_type,
    upper(e.country_code)                                           AS usage_location,
    nullif(regexp_replace(e.mobile, '[^0-9+]', '', 'g'), '')        AS mobile_phone,

    -- Profile columns (optional): the first day drives Lifecycle Workflows
    -- joiner tasks (e.g. a Temporary Access Pass for the first sign-in).
    e.hire_date::timestamptz                                        AS employee_hire_date, -- midnight, database time zone
    e.org_unit                                                      AS cost_center,
    s.street                                                        AS street_address,
    s.postal_code                                                   AS postal_code,
    s.city                                                          AS city,
    -- The leave date drives leaver tasks; writing it needs the application
    -- permission User-LifeCycleInfo.ReadWrite.All (worker check asks for it):
    -- e.termination_date::timestamptz                              AS employee_leave_date_time,

    -- People on leave keep their account, disabled; they come back enabled.
    NOT e.on_leave                                                  AS account_enabled,

    CASE WHEN e.manager_number IS NOT NULL
         THEN 'E' || lpad(e.manager_number::text, 6, '0') END      AS manager_external_id,

    coalesce((SELECT array_agg(g.group_id ORDER BY g.group_id)
                FROM hr.org_unit_groups g
               WHERE g.org_unit = e.org_unit), '{}')                AS groups
FROM hr.employees e
LEFT JOIN hr.sites s ON s.site_code = e.site_code
-- Scoping: who gets an account at all.
WHERE e.contract_type <> 'intern'                                     -- interns use the lab tenant
  AND e.hire_date <= current_date + 7                                 -- accounts ready a week before day one
  AND (e.termination_date IS NULL OR e.termination_date > current_date); -- leavers drop out

-- The worker only reads the view; give its role nothing more:
--   GRANT USAGE ON SCHEMA hr TO entraprov;
--   GRANT SELECT ON hr.entra_users TO entraprov;
-- (a view runs with its owner's rights, so the worker needs no access to
-- hr.employees itself).
