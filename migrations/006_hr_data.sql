-- Real HR data (issue 19).
--
-- A directory object is owned by one job at most: before a job adopts an
-- account it looks for another job's link to it by object id alone, which
-- (job, object_id) cannot serve.
CREATE INDEX directory_links_object_idx ON entraprov.directory_links (object_id)
    WHERE object_id IS NOT NULL;

-- rekey: a link moved to a new external_id (HR re-keyed the person) with
-- its account kept; handover: a link moved from one job to another.
ALTER TABLE entraprov.sync_operations DROP CONSTRAINT IF EXISTS sync_operations_action_check;
ALTER TABLE entraprov.sync_operations ADD CONSTRAINT sync_operations_action_check
    CHECK (action IN ('create', 'update', 'disable', 'enable', 'delete', 'restore',
                      'manager', 'group_add', 'group_remove', 'adopt', 'skip', 'rekey', 'handover'));

---- create above / drop below ----

DELETE FROM entraprov.sync_operations WHERE action IN ('rekey', 'handover');
ALTER TABLE entraprov.sync_operations DROP CONSTRAINT IF EXISTS sync_operations_action_check;
ALTER TABLE entraprov.sync_operations ADD CONSTRAINT sync_operations_action_check
    CHECK (action IN ('create', 'update', 'disable', 'enable', 'delete', 'restore',
                      'manager', 'group_add', 'group_remove', 'adopt', 'skip'));
DROP INDEX IF EXISTS entraprov.directory_links_object_idx;
