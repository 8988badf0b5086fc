-- The whole user profile an HR feed maintains (issue 15).
--
-- desired_users gains one nullable column per attribute of the profile
-- table (internal/profile): a job manages exactly the attributes its
-- source relation has a column for, so existing views keep working and
-- manage what they managed before.
ALTER TABLE entraprov.desired_users
    ADD COLUMN employee_hire_date       timestamptz,
    ADD COLUMN employee_leave_date_time timestamptz,
    ADD COLUMN division                 text,
    ADD COLUMN cost_center              text,
    ADD COLUMN street_address           text,
    ADD COLUMN city                     text,
    ADD COLUMN state                    text,
    ADD COLUMN postal_code              text,
    ADD COLUMN country                  text,
    ADD COLUMN business_phones          text[],
    ADD COLUMN fax_number               text,
    ADD COLUMN other_mails              text[],
    ADD COLUMN preferred_language       text,
    ADD COLUMN extension_attribute_1    text,
    ADD COLUMN extension_attribute_2    text,
    ADD COLUMN extension_attribute_3    text,
    ADD COLUMN extension_attribute_4    text,
    ADD COLUMN extension_attribute_5    text,
    ADD COLUMN extension_attribute_6    text,
    ADD COLUMN extension_attribute_7    text,
    ADD COLUMN extension_attribute_8    text,
    ADD COLUMN extension_attribute_9    text,
    ADD COLUMN extension_attribute_10   text,
    ADD COLUMN extension_attribute_11   text,
    ADD COLUMN extension_attribute_12   text,
    ADD COLUMN extension_attribute_13   text,
    ADD COLUMN extension_attribute_14   text,
    ADD COLUMN extension_attribute_15   text;

-- The mirror keeps every attribute without a column of its own (the
-- attributes added since 001, and each job's schema extensions, whose
-- names differ per job) in one jsonb object: Graph property → value in
-- its canonical text form. Adding an attribute then needs no mirror
-- migration, and a job's extensions need no DDL at all.
ALTER TABLE entraprov.directory_users ADD COLUMN profile jsonb NOT NULL DEFAULT '{}';

---- create above / drop below ----

ALTER TABLE entraprov.directory_users DROP COLUMN IF EXISTS profile;
ALTER TABLE entraprov.desired_users
    DROP COLUMN IF EXISTS employee_hire_date,
    DROP COLUMN IF EXISTS employee_leave_date_time,
    DROP COLUMN IF EXISTS division,
    DROP COLUMN IF EXISTS cost_center,
    DROP COLUMN IF EXISTS street_address,
    DROP COLUMN IF EXISTS city,
    DROP COLUMN IF EXISTS state,
    DROP COLUMN IF EXISTS postal_code,
    DROP COLUMN IF EXISTS country,
    DROP COLUMN IF EXISTS business_phones,
    DROP COLUMN IF EXISTS fax_number,
    DROP COLUMN IF EXISTS other_mails,
    DROP COLUMN IF EXISTS preferred_language,
    DROP COLUMN IF EXISTS extension_attribute_1,
    DROP COLUMN IF EXISTS extension_attribute_2,
    DROP COLUMN IF EXISTS extension_attribute_3,
    DROP COLUMN IF EXISTS extension_attribute_4,
    DROP COLUMN IF EXISTS extension_attribute_5,
    DROP COLUMN IF EXISTS extension_attribute_6,
    DROP COLUMN IF EXISTS extension_attribute_7,
    DROP COLUMN IF EXISTS extension_attribute_8,
    DROP COLUMN IF EXISTS extension_attribute_9,
    DROP COLUMN IF EXISTS extension_attribute_10,
    DROP COLUMN IF EXISTS extension_attribute_11,
    DROP COLUMN IF EXISTS extension_attribute_12,
    DROP COLUMN IF EXISTS extension_attribute_13,
    DROP COLUMN IF EXISTS extension_attribute_14,
    DROP COLUMN IF EXISTS extension_attribute_15;
