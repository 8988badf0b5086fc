-- The mirror learns managers from /users/delta ($select=…,manager returns
-- manager@delta). Rows read before this migration, or by a delta round that
-- did not select the manager, have manager_known = false: their
-- manager_object_id says nothing, and the planner falls back to the link's
-- record of the manager it applied. A full re-read sets it on every row.
ALTER TABLE entraprov.directory_users
    ADD COLUMN manager_known boolean NOT NULL DEFAULT false;

---- create above / drop below ----

ALTER TABLE entraprov.directory_users DROP COLUMN IF EXISTS manager_known;
