-- Placeholder for the 007 migration of issue 15 (attribute table), which is
-- written on another branch: tern needs every number up to the latest.
-- Delete this file when that migration is merged.
SELECT 1;

---- create above / drop below ----

SELECT 1;
