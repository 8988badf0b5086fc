-- One owner per account, enforced where links are written.
--
-- A job never adopts or writes to an account another job links. The
-- planner checks that when it plans, but two jobs (two daemons, a job of the
-- file and a tenant template on the same tenant) can plan the same adoption
-- in the same second. From now on a link names its object before the first
-- Graph write to it (internal/sync/admit.go), and this index lets one link
-- per object exist across all jobs: the second claimant's link is refused,
-- and that user fails without anything being sent.
--
-- Not scoped by tenant: an object id is a GUID Entra assigns to one object
-- of one tenant (a guest of another tenant is another object with its own
-- id), and the planner's look for another job's link is unscoped as well.
--
-- Links that already share an object (two jobs that adopted the same
-- account in the same second, or a link made by hand) must not fail the
-- migration, and what happens to them stays as it was: neither job acts on
-- such an account (the planner fails both rows naming the other job) and
-- `worker check` lists it until one of the links is released. So the
-- earliest link of each such object stays covered by the index and the
-- others are marked legacy_shared and left out of it: no new link to the
-- object can be added, and the marked ones are kept. A marked link that
-- comes to name another object, or whose object no other job's link names
-- any more, is covered again at its next write (store.UpsertLinks).
ALTER TABLE entraprov.directory_links
    ADD COLUMN legacy_shared boolean NOT NULL DEFAULT false;

UPDATE entraprov.directory_links l
   SET legacy_shared = true
  FROM (SELECT job, external_id,
               row_number() OVER (PARTITION BY object_id ORDER BY created_at, job, external_id) AS n
          FROM entraprov.directory_links
         WHERE object_id IS NOT NULL) d
 WHERE d.job = l.job AND d.external_id = l.external_id AND d.n > 1;

CREATE UNIQUE INDEX directory_links_owner_key ON entraprov.directory_links (object_id)
    WHERE object_id IS NOT NULL AND NOT legacy_shared;

---- create above / drop below ----

DROP INDEX IF EXISTS entraprov.directory_links_owner_key;
ALTER TABLE entraprov.directory_links DROP COLUMN IF EXISTS legacy_shared;
