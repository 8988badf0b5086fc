package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/profile"
)

// identityColumns are the source columns every job needs beside the
// attributes: the key, the leave flag and the relationships.
var identityColumns = []struct {
	name string
	kind profile.Kind
}{
	{"external_id", profile.String},
	{"account_enabled", profile.Bool},
	{"manager_external_id", profile.String},
	{"groups", profile.List},
}

// accepts says whether a column of PostgreSQL type typ (format_type of the
// base type) can feed kind; the stream casts it to the contract type.
func accepts(kind profile.Kind, typ string) bool {
	switch kind {
	case profile.Bool:
		return typ == "boolean"
	case profile.List:
		switch typ {
		case "text[]", "character varying[]", "uuid[]", "citext[]":
			return true
		}
		return false
	case profile.Time:
		switch typ {
		case "timestamp with time zone", "timestamp without time zone", "date":
			return true
		}
		return false
	case profile.Integer:
		switch typ {
		case "integer", "bigint", "smallint", "numeric":
			return true
		}
		return false
	}
	switch typ {
	case "text", "character varying", "character", "citext", "name":
		return true
	}
	return false
}

// relationIdent quotes a configured relation name ("schema.name" or "name").
func relationIdent(relation string) (pgx.Identifier, error) {
	parts := strings.Split(relation, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("source relation %q: want name or schema.name", relation)
	}
	for _, p := range parts {
		if p == "" {
			return nil, fmt.Errorf("source relation %q: empty name part", relation)
		}
	}
	return pgx.Identifier(parts), nil
}

// sourceRel is a job's source as the store reads it: the relation and, for
// a job expanded from a template (config.ScopedSource), the value its
// tenant_scope column must hold. The value travels as a query parameter,
// never in the SQL text.
type sourceRel struct {
	ident  pgx.Identifier
	scope  string
	scoped bool
}

// parseSource reads a job's Source: "schema.name", "name", or either with
// the scope config.ScopedSource appends.
func parseSource(source string) (sourceRel, error) {
	rel, scope, scoped := config.SplitSource(source)
	ident, err := relationIdent(rel)
	if err != nil {
		return sourceRel{}, err
	}
	return sourceRel{ident: ident, scope: scope, scoped: scoped}, nil
}

// from is the FROM item that reads the source: the relation itself, or
// only its rows of the job's tenant, the scope being parameter $n.
func (r sourceRel) from(n int) string {
	if !r.scoped {
		return r.ident.Sanitize()
	}
	return fmt.Sprintf("(SELECT * FROM %s WHERE %s::text = $%d)", r.ident.Sanitize(), config.ScopeColumn, n)
}

// args appends the scope (when scoped) to a query's other arguments, as
// the parameter from(len(args)+1) names.
func (r sourceRel) args(args ...any) []any {
	if r.scoped {
		return append(args, r.scope)
	}
	return args
}

// CheckSource verifies that relation (a table or view) exists and has the
// identity columns, the required attributes' columns, and each other
// attribute column it has with a usable type. The error names every
// missing column and every wrong type with the type expected, so a user
// fixes their view in one go.
func (s *Store) CheckSource(ctx context.Context, relation string) error {
	_, err := s.presentSchema(ctx, relation, profile.From(ctx))
	return err
}

// SourceFacts is what a run learns of its job's source before it plans,
// from one aggregate read of the job's rows (InspectSource): the
// attributes the job owns and whether it manages group memberships. Which
// application permissions the job needs follows from both
// (directory.RequiredPermissions).
type SourceFacts struct {
	// Schema is the base schema restricted to the attributes the job owns.
	Schema *profile.Schema
	// Groups says the job has group memberships to manage: a source row
	// lists groups, or a link of the job records groups applied earlier
	// (to be removed).
	Groups bool
}

// InspectSource checks relation like CheckSource and returns what job owns
// and manages there: base restricted to the attributes the relation has a
// column for, except an OwnedWhenFilled one whose column is NULL in every
// one of the job's rows (profile.Schema.Fill), and whether it manages
// group memberships. An attribute not owned is never read, written or
// cleared. Both facts come from one aggregate read of the source: a read
// of a view can be costly, and one that changes between reads (a view over
// a volatile function) is seen once before the plan rather than twice.
func (s *Store) InspectSource(ctx context.Context, job, relation string, base *profile.Schema) (SourceFacts, error) {
	schema, err := s.presentSchema(ctx, relation, base)
	if err != nil {
		return SourceFacts{}, err
	}
	whenFilled := schema.WhenFilled()
	src, err := parseSource(relation)
	if err != nil {
		return SourceFacts{}, err
	}
	// coalesce: bool_or over no rows is NULL. The links' groups are the
	// job's, not the source's: a scalar subquery, evaluated once.
	exprs := []string{`coalesce(bool_or(cardinality(s.groups) > 0), false)
       OR EXISTS (SELECT 1 FROM entraprov.directory_links l WHERE l.job = $1 AND cardinality(l.groups) > 0)`}
	for _, c := range whenFilled {
		exprs = append(exprs, "coalesce(bool_or(s."+pgx.Identifier{c}.Sanitize()+" IS NOT NULL), false)")
	}
	var facts SourceFacts
	filled := make([]bool, len(whenFilled))
	targets := []any{&facts.Groups}
	for i := range filled {
		targets = append(targets, &filled[i])
	}
	q := "SELECT " + strings.Join(exprs, ",\n       ") + "\n  FROM " + src.from(2) + " s"
	if err := s.pool.QueryRow(ctx, q, src.args(job)...).Scan(targets...); err != nil {
		return SourceFacts{}, fmt.Errorf("inspect source %s for job %s (which columns it fills, whether it manages groups): %w", relation, job, err)
	}
	facts.Schema = schema.Fill(func(c string) bool {
		i := slices.Index(whenFilled, c)
		return i >= 0 && filled[i]
	})
	return facts, nil
}

// presentSchema checks relation's contract and restricts base to the
// attributes it has a column for (without reading its rows).
func (s *Store) presentSchema(ctx context.Context, relation string, base *profile.Schema) (*profile.Schema, error) {
	have, scoped, err := s.sourceColumnTypes(ctx, relation)
	if err != nil {
		return nil, err
	}
	var problems []string
	if _, ok := have[config.ScopeColumn]; scoped && !ok {
		problems = append(problems, fmt.Sprintf("missing column %s (text): the source of a template job is shared by its tenants, "+
			"each reading the rows whose %s equals its tenants row's scope; add it to the view (e.g. customer_id AS %s)",
			config.ScopeColumn, config.ScopeColumn, config.ScopeColumn))
	}
	check := func(name string, kind profile.Kind, required bool) {
		typ, ok := have[name]
		switch {
		case !ok && required:
			problems = append(problems, fmt.Sprintf("missing column %s (%s)", name, kind.SQLType()))
		case ok && !accepts(kind, typ):
			problems = append(problems, fmt.Sprintf("column %s has type %s; want %s (cast it in the view: %s::%s AS %s)",
				name, typ, kind.SQLType(), name, kind.SQLType(), name))
		}
	}
	for _, c := range identityColumns {
		check(c.name, c.kind, true)
	}
	for _, a := range base.Attrs {
		check(a.Column, a.Kind, a.Required && a.Column != "mail_nickname")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("source %s does not match the desired_users contract:\n  %s",
			relation, strings.Join(problems, "\n  "))
	}
	return base.Restrict(func(column string) bool { _, ok := have[column]; return ok }), nil
}

// sourceColumnTypes returns the columns of relation with their types
// (domains by their base type), after checking it exists and may be read,
// and whether it is a template job's scoped source.
func (s *Store) sourceColumnTypes(ctx context.Context, relation string) (map[string]string, bool, error) {
	src, err := parseSource(relation)
	if err != nil {
		return nil, false, err
	}
	ident := src.ident
	var oid *uint32
	err = s.pool.QueryRow(ctx, `SELECT to_regclass($1)::oid`, ident.Sanitize()).Scan(&oid)
	if err != nil {
		return nil, false, fmt.Errorf("source %s: %w", relation, err)
	}
	if oid == nil {
		return nil, false, fmt.Errorf("source %s: relation does not exist (or the worker's role cannot see it)", relation)
	}
	rows, err := s.pool.Query(ctx, `
SELECT a.attname,
       CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, NULL) ELSE format_type(a.atttypid, NULL) END
  FROM pg_attribute a
  JOIN pg_type t ON t.oid = a.atttypid
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped`, *oid)
	if err != nil {
		return nil, false, fmt.Errorf("source %s: read columns: %w", relation, err)
	}
	have := map[string]string{}
	var name, typ string
	_, err = pgx.ForEachRow(rows, []any{&name, &typ}, func() error {
		have[name] = typ
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("source %s: read columns: %w", relation, err)
	}
	if err := s.checkPrivilege(ctx, *oid, relation); err != nil {
		return nil, false, err
	}
	return have, src.scoped, nil
}

func (s *Store) checkPrivilege(ctx context.Context, oid uint32, relation string) error {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT has_table_privilege($1::oid, 'SELECT')`, oid).Scan(&ok); err != nil {
		return fmt.Errorf("source %s: check privilege: %w", relation, err)
	}
	if !ok {
		return fmt.Errorf("source %s: the worker's role may not SELECT from it (GRANT SELECT ON %s TO <role>)", relation, relation)
	}
	return nil
}

// streamQuery builds the ordered FULL OUTER JOIN for one source relation.
// Every text column is coalesced to the empty string (the Go contract:
// empty means NULL), and the has_* flags tell which sides exist.
//
// Shape, for speed at 100k+ rows: only the source ⋈ links join (subquery j)
// is sorted; mirror rows, candidates, managers and duplicate UPNs are then
// looked up per row through indexes (LATERAL … OFFSET 0 and scalar
// subqueries keep nested loops), which preserves j's order, so the wide
// final rows are never sorted or spilled to disk.
func streamQuery(rel string, schema *profile.Schema) string {
	srcList, srcCoalesced := sourceSelectLists(schema)
	return `
WITH src AS (
SELECT ` + srcList + `, true AS src_row
  FROM ` + rel + ` s
` + streamInvalidIDs + streamRekeys + streamJoin + `
SELECT j.xid,
       coalesce(j.src_row, false),
       ` + srcCoalesced + `
       j.l_external_id IS NOT NULL,
       coalesce(j.l_object_id, ''), coalesce(j.l_upn, ''), coalesce(j.l_state, ''),
       coalesce(j.l_applied_hash, ''), coalesce(j.l_manager_object_id, ''), coalesce(j.l_groups, '{}'),
       j.l_disabled_at, j.l_deleted_at, j.l_created_at, j.l_updated_at,
       m.object_id IS NOT NULL, ` + mirrorCols("m", schema) + `,
       c.object_id IS NOT NULL, ` + mirrorCols("c", schema) + `,
       ` + streamLookups + streamMirrorJoins
}

// sourceSelectLists returns the source columns cast to the contract types,
// attributes in their canonical text form (the select list of CTE src),
// and the same columns read back from j with NULL turned into the
// contract's empty value (each followed by a comma), in scan order:
// external_id, the managed attributes, account_enabled,
// manager_external_id, groups. An attribute the job does not manage is not
// read; employee_id, which the re-key and candidate lookups use, is then
// NULL.
func sourceSelectLists(schema *profile.Schema) (srcList, srcCoalesced string) {
	src := []string{"s.external_id::text AS external_id", "s.account_enabled::boolean AS account_enabled",
		"s.manager_external_id::text AS manager_external_id", "s.groups::text[] AS groups"}
	cols := []string{"coalesce(j.external_id, '')"}
	for i, a := range schema.Attrs {
		if !schema.Managed(i) {
			if a.Column == "employee_id" {
				src = append(src, "NULL::text AS employee_id")
			}
			continue
		}
		src = append(src, canonicalSQL("s."+a.Column, a.Kind)+" AS "+a.Column)
		cols = append(cols, fmt.Sprintf("coalesce(j.%s, '')", a.Column))
	}
	cols = append(cols, "coalesce(j.account_enabled, true)", "coalesce(j.manager_external_id, '')", "coalesce(j.groups, '{}')")
	return strings.Join(src, ",\n       "), strings.Join(cols, ", ") + ", "
}

// canonicalSQL is expr of kind as text in the canonical form of
// profile.Values (timestamps in UTC at second precision, lists joined by
// profile.ListSep).
func canonicalSQL(expr string, kind profile.Kind) string {
	switch kind {
	case profile.Time:
		return "to_char(" + expr + `::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`
	case profile.List:
		return "array_to_string(" + expr + "::text[], chr(31))"
	case profile.Bool:
		return expr + "::boolean::text"
	case profile.Integer:
		return expr + "::bigint::text"
	}
	return expr + "::text"
}

// The parts of streamQuery, in query order. Each CTE part opens with the
// "), name AS (" that closes the one before it.

// streamInvalidIDs: CTEs bad and claims, the links a refused row (invalid
// external_id) claims, so they are not treated as leavers.
const streamInvalidIDs = `), bad AS (
-- Rows whose external_id is NULL, empty or padded with whitespace: each is
-- refused, and must not turn the user it names into a leaver.
SELECT format('%L', s.external_id) AS shown,
       regexp_replace(s.external_id, '^\s+|\s+$', '', 'g') AS trimmed,
       lower(nullif(s.user_principal_name, '')) AS upn
  FROM src s
 WHERE s.external_id IS NULL OR s.external_id = '' OR s.external_id ~ '^\s|\s$'
), claims AS (
-- Links such a row claims, by trimmed id or by UPN (two equi-joins, so a
-- feed full of padded ids costs hash joins, not links x rows).
SELECT x.external_id, min(x.shown) AS shown FROM (
    SELECT l.external_id, b.shown FROM entraprov.directory_links l JOIN bad b ON b.trimmed = l.external_id WHERE l.job = $1
    UNION ALL
    SELECT l.external_id, b.shown FROM entraprov.directory_links l JOIN bad b ON b.upn = lower(l.user_principal_name) WHERE l.job = $1
) x GROUP BY 1
`

// streamRekeys: CTEs orphans, newcomers, pairs and rekeys, and links (the
// job's links keyed by the external_id they now answer to).
const streamRekeys = `), orphans AS (
-- Re-keys. Links whose external_id left the source, with their object's UPN
-- and employeeId as the mirror holds them...
SELECT l.external_id, lower(l.user_principal_name) AS lupn, lower(u.user_principal_name) AS mupn,
       nullif(u.employee_id, '') AS employee_id
  FROM entraprov.directory_links l
  LEFT JOIN entraprov.directory_users u ON u.job = $1 AND u.object_id = l.object_id
 WHERE l.job = $1 AND l.state <> 'creating' AND l.object_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM src s WHERE s.external_id = l.external_id)
), newcomers AS (
-- ...and valid source rows no usable link names (a "creating" marker of a
-- create that met the old account's UPN counts as none)...
SELECT s.external_id, lower(nullif(s.user_principal_name, '')) AS upn, nullif(btrim(s.employee_id), '') AS employee_id
  FROM src s
 WHERE s.external_id <> '' AND s.external_id !~ '^\s|\s$'
   AND NOT EXISTS (SELECT 1 FROM entraprov.directory_links l
                    WHERE l.job = $1 AND l.external_id = s.external_id AND l.state <> 'creating' AND l.object_id IS NOT NULL)
), pairs AS (
-- ...that want the same account (equi-joins only: a wholesale re-key of
-- 100k ids is three hash joins)...
SELECT n.external_id AS new_id, o.external_id AS old_id FROM newcomers n JOIN orphans o ON n.upn = o.lupn
UNION
SELECT n.external_id, o.external_id FROM newcomers n JOIN orphans o ON n.upn = o.mupn
UNION
SELECT n.external_id, o.external_id FROM newcomers n JOIN orphans o ON n.employee_id = o.employee_id
), rekeys AS (
-- ...one to one: the row is then joined with the old link (the planner
-- decides whether the job's matching rule lets the link move).
SELECT p.new_id, p.old_id
  FROM (SELECT new_id, min(old_id) AS old_id FROM pairs GROUP BY 1) p
  JOIN (SELECT old_id, min(new_id) AS new_id FROM pairs GROUP BY 1) q ON q.old_id = p.old_id AND q.new_id = p.new_id
), links AS (
SELECT lk.*, coalesce(rk.new_id, lk.external_id) AS key_id
  FROM entraprov.directory_links lk
  LEFT JOIN rekeys rk ON rk.old_id = lk.external_id
 WHERE lk.job = $1
   AND NOT EXISTS (SELECT 1 FROM rekeys r2 WHERE r2.new_id = lk.external_id)
`

// streamJoin: CTE j, the only sorted part: source FULL JOIN links.
const streamJoin = `), j AS (
SELECT coalesce(src.external_id, l.key_id, '') AS xid, src.*,
       l.external_id AS l_external_id, l.object_id AS l_object_id, l.user_principal_name AS l_upn,
       l.state AS l_state, l.applied_hash AS l_applied_hash, l.manager_object_id AS l_manager_object_id,
       l.groups AS l_groups, l.disabled_at AS l_disabled_at, l.deleted_at AS l_deleted_at,
       l.created_at AS l_created_at, l.updated_at AS l_updated_at
  FROM src
  FULL JOIN links l ON l.key_id = src.external_id
 ORDER BY 1
)`

// streamLookups: the per-row lookups after the mirror and candidate columns,
// in scan order: manager object id, duplicate UPN, claimed by an invalid row,
// candidate's owner in another job, re-key origin, UPN released by, and the
// other job sharing the linked object.
const streamLookups = `coalesce((SELECT mgr.object_id FROM entraprov.directory_links mgr
                  WHERE mgr.job = $1 AND mgr.external_id = j.manager_external_id
                    AND mgr.object_id IS NOT NULL AND mgr.state <> 'deleted'), ''),
       coalesce(lower(j.user_principal_name) IN (
                  SELECT lower(user_principal_name) FROM src
                   WHERE user_principal_name <> ''
                   GROUP BY 1 HAVING count(*) > 1), false),
       CASE WHEN j.src_row IS NULL
            THEN coalesce((SELECT cl.shown FROM claims cl WHERE cl.external_id = j.l_external_id), '')
            ELSE '' END,
       CASE WHEN c.object_id IS NULL THEN '' ELSE coalesce((SELECT x.job || chr(31) || x.external_id
                  FROM entraprov.directory_links x
                 WHERE x.object_id = c.object_id AND x.job <> $1
                 ORDER BY x.job LIMIT 1), '') END,
       CASE WHEN j.l_external_id <> j.xid THEN j.l_external_id ELSE '' END,
       CASE WHEN m.object_id IS NOT NULL AND btrim(j.user_principal_name) <> ''
                 AND lower(btrim(j.user_principal_name)) <> lower(m.user_principal_name)
            THEN coalesce((SELECT x.external_id
                             FROM entraprov.directory_users u
                             JOIN entraprov.directory_links x ON x.job = $1 AND x.object_id = u.object_id
                            WHERE u.job = $1 AND lower(u.user_principal_name) = lower(btrim(j.user_principal_name))
                              AND u.object_id <> m.object_id
                              AND EXISTS (SELECT 1 FROM src s WHERE s.external_id = x.external_id
                                             AND lower(btrim(s.user_principal_name)) <> lower(u.user_principal_name))
                            ORDER BY 1 LIMIT 1), '')
            ELSE '' END,
       CASE WHEN j.l_object_id IS NULL THEN '' ELSE coalesce((SELECT x.job || '/' || x.external_id
                  FROM entraprov.directory_links x
                 WHERE x.object_id = j.l_object_id AND x.job <> $1
                 ORDER BY 1 LIMIT 1), '') END`

// streamMirrorJoins: the FROM clause; the linked object's mirror row (m) and
// the match candidate (c), looked up per row through indexes.
const streamMirrorJoins = `
  FROM j
  LEFT JOIN LATERAL (
        SELECT * FROM entraprov.directory_users u
         WHERE u.job = $1 AND u.object_id = j.l_object_id
        OFFSET 0
  ) m ON true
  LEFT JOIN LATERAL (
        SELECT cand.* FROM (
            (SELECT u.*, 1 AS pri
               FROM entraprov.directory_users u
              WHERE u.job = $1 AND lower(u.user_principal_name) = lower(j.user_principal_name)
                AND NOT EXISTS (SELECT 1 FROM entraprov.directory_links x WHERE x.job = $1 AND x.object_id = u.object_id)
              ORDER BY u.deleted, u.object_id
              LIMIT 1)
            UNION ALL
            (SELECT u.*, 2 AS pri
               FROM entraprov.directory_users u
              WHERE u.job = $1 AND u.employee_id = j.employee_id AND j.employee_id <> ''
                AND NOT EXISTS (SELECT 1 FROM entraprov.directory_links x WHERE x.job = $1 AND x.object_id = u.object_id)
              ORDER BY u.deleted, u.object_id
              LIMIT 1)
        ) cand
         WHERE j.src_row
           AND (j.l_external_id IS NULL OR j.l_state = 'creating')
         ORDER BY cand.pri
         LIMIT 1
  ) c ON true
 ORDER BY j.xid`

// mirrorCols reads a mirror row: object_id, the managed attributes (from
// their own column, else from the profile jsonb), mail, manager_object_id,
// account_enabled, deleted and manager_known.
func mirrorCols(alias string, schema *profile.Schema) string {
	var b strings.Builder
	fmt.Fprintf(&b, "coalesce(%s.object_id, ''), ", alias)
	for i, a := range schema.Attrs {
		if !schema.Managed(i) {
			continue
		}
		if a.Mirror != "" {
			fmt.Fprintf(&b, "coalesce(%s.%s, ''), ", alias, a.Mirror)
		} else {
			fmt.Fprintf(&b, "coalesce(%s.profile->>'%s', ''), ", alias, a.Graph)
		}
	}
	fmt.Fprintf(&b, "coalesce(%[1]s.mail, ''), coalesce(%[1]s.manager_object_id, ''), coalesce(%[1]s.account_enabled, false), "+
		"coalesce(%[1]s.deleted, false), coalesce(%[1]s.manager_known, false)", alias)
	return b.String()
}

// mirrorTargets returns scan targets for mirrorCols into u.
func (sc *sourceScan) mirrorTargets(u *DirectoryUser) []any {
	t := []any{&u.ObjectID}
	t = append(t, sc.arena.packTargets(&u.Attrs, sc.schema)...)
	return append(t, &u.Mail, &u.ManagerObjectID, &u.AccountEnabled, &u.Deleted, &u.ManagerKnown)
}

// ErrStopStream may be returned by a StreamSource callback to end the stream
// early; StreamSource then returns nil.
var ErrStopStream = errors.New("stop streaming")

// StreamSource calls fn for every external_id known to the job, in byte
// order of external_id: the FULL OUTER JOIN of the source relation with the
// job's directory_links, each link joined with its directory_users mirror
// row. Rows are read one at a time from the server, so memory does not grow
// with the number of users. An external_id the source holds more than once
// is passed once per source row (at most maxHeldDuplicates of them), each
// with SourceRows set to the count. fn must not retain the SourceRow's
// pointers beyond the call if it mutates them; each row gets fresh structs,
// so retaining them read-only is safe.
//
// Run CheckSource first: a relation missing a column fails here with
// PostgreSQL's less friendly message.
func (s *Store) StreamSource(ctx context.Context, job, relation string, fn func(SourceRow) error) error {
	src, err := parseSource(relation)
	if err != nil {
		return err
	}
	// The attributes to read: the job's (profile.WithSchema), else every
	// built-in attribute the relation has a column for.
	schema, ok := profile.Carried(ctx)
	if !ok {
		facts, err := s.InspectSource(ctx, job, relation, profile.Default)
		if err != nil {
			return err
		}
		schema = facts.Schema
	}
	tx, err := s.beginStreamTx(ctx)
	if err != nil {
		return fmt.Errorf("stream source %s for job %s: %w", relation, job, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only: nothing to keep
	rows, err := tx.Query(ctx, streamQuery(src.from(2), schema), src.args(job)...)
	if err != nil {
		return fmt.Errorf("stream source %s for job %s: %w", relation, job, err)
	}
	defer rows.Close()

	scan := newSourceScan(job, schema)
	var group idGroup
	for n := 1; rows.Next(); n++ {
		row, err := scan.next(rows)
		if err != nil {
			return fmt.Errorf("stream source %s for job %s: row %d: %w", relation, job, n, err)
		}
		if err := group.add(row, fn); err != nil {
			return stopped(err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("stream source %s for job %s: %w", relation, job, err)
	}
	return stopped(group.emit(fn))
}

// beginStreamTx opens the read-only transaction StreamSource reads in, in
// the run's shared snapshot if ctx carries one (WithSnapshot). It scopes
// work_mem: with PostgreSQL's 4 MB default the join, sort and duplicate-UPN
// aggregate of 100k users spill to disk, measured ~15% slower.
func (s *Store) beginStreamTx(ctx context.Context) (pgx.Tx, error) {
	tx, err := s.beginSourceTx(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '64MB'`); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return tx, nil
}

// sourceScan holds the scan targets of one streamQuery row, reused for
// every row; next copies them into a fresh SourceRow.
type sourceScan struct {
	job     string
	schema  *profile.Schema
	targets []any
	arena   *rowArena

	xid                        string
	hasSrc, hasLink, hasMirror bool
	hasCand, dupUPN            bool
	d                          DesiredUser
	l                          Link
	m, c                       DirectoryUser
	lCreated, lUpdated         pgtype.Timestamptz
	disabledAt, deletedAt      *time.Time
	mgrObjectID, claimed       string
	owner, rekeyFrom, released string
	sharedWith                 string
	lState                     string // l.State, through the arena
}

// newSourceScan lists the targets in streamQuery's column order.
func newSourceScan(job string, schema *profile.Schema) *sourceScan {
	sc := &sourceScan{job: job, schema: schema}
	// Text columns go through the arena: one string allocation per row
	// instead of one per column, each side's attributes packed into one
	// profile.Values, and repeated values (link states) shared across rows.
	sc.arena = newRowArena()
	d, l := &sc.d, &sc.l
	targets := []any{&sc.xid, &sc.hasSrc, &d.ExternalID}
	targets = append(targets, sc.arena.packTargets(&d.Attrs, schema)...)
	targets = append(targets, &d.AccountEnabled, &d.ManagerExternalID, &d.Groups,
		&sc.hasLink, &l.ObjectID, &l.UserPrincipalName, &sc.lState, &l.AppliedHash, &l.ManagerObjectID, &l.Groups,
		&sc.disabledAt, &sc.deletedAt, &sc.lCreated, &sc.lUpdated,
		&sc.hasMirror)
	targets = append(targets, sc.mirrorTargets(&sc.m)...)
	targets = append(targets, &sc.hasCand)
	targets = append(targets, sc.mirrorTargets(&sc.c)...)
	targets = append(targets, &sc.mgrObjectID, &sc.dupUPN, &sc.claimed, &sc.owner, &sc.rekeyFrom, &sc.released, &sc.sharedWith)
	for i, t := range targets {
		switch p := t.(type) {
		case *string:
			targets[i] = arenaText{a: sc.arena, dst: p, intern: p == &sc.lState}
		case *[]string:
			targets[i] = newArenaList(sc.arena, p)
		}
	}
	sc.targets = targets
	return sc
}

// next scans the current row of rows into a SourceRow of fresh structs.
func (sc *sourceScan) next(rows pgx.Rows) (SourceRow, error) {
	sc.disabledAt, sc.deletedAt = nil, nil
	err := rows.Scan(sc.targets...)
	sc.arena.finish()
	if err != nil {
		return SourceRow{}, err
	}
	row := SourceRow{ExternalID: sc.xid}
	if sc.hasSrc {
		du := sc.d
		row.Desired = &du
		row.ManagerObjectID = sc.mgrObjectID
		row.DuplicateUPN = sc.dupUPN
	}
	if sc.hasLink {
		row.ClaimedByInvalid, row.RekeyFrom, row.UPNReleasedBy, row.SharedWith = sc.claimed, sc.rekeyFrom, sc.released, sc.sharedWith
		lk := sc.l
		lk.State = LinkState(sc.lState)
		lk.Job = sc.job
		lk.ExternalID = sc.xid
		lk.DisabledAt = sc.disabledAt
		lk.DeletedAt = sc.deletedAt
		lk.CreatedAt = sc.lCreated.Time
		lk.UpdatedAt = sc.lUpdated.Time
		row.Link = &lk
	}
	if sc.hasMirror {
		mu := sc.m
		row.Current = &mu
	}
	if sc.hasCand {
		cu := sc.c
		row.Candidate = &cu
		row.CandidateOwner, row.CandidateOwnerID, _ = strings.Cut(sc.owner, "\x1f")
	}
	return row, nil
}

// idGroup holds the rows of one external_id. They are adjacent (the stream
// is ordered by it) and held until the next id shows how many there were, so
// each carries SourceRows (the source contract: one row per external_id).
// A lookahead of one row costs nothing measurable, where a window count in
// the query (PARTITION BY xid) cost its WindowAgg about 5% of the query's
// time at 100k users; only a duplicated id's rows are held, up to
// maxHeldDuplicates.
type idGroup struct {
	rows    []SourceRow
	srcRows int // source rows of the id, counted past maxHeldDuplicates too
}

// add passes on the previous id's rows when row starts a new id, then holds row.
func (g *idGroup) add(row SourceRow, fn func(SourceRow) error) error {
	if len(g.rows) > 0 && g.rows[0].ExternalID != row.ExternalID {
		if err := g.emit(fn); err != nil {
			return err
		}
	}
	if row.Desired != nil {
		g.srcRows++
	}
	if len(g.rows) < maxHeldDuplicates {
		g.rows = append(g.rows, row)
	}
	return nil
}

// emit passes the held rows to fn, each with the id's count, and empties the group.
func (g *idGroup) emit(fn func(SourceRow) error) error {
	for i := range g.rows {
		if g.rows[i].Desired != nil {
			g.rows[i].SourceRows = g.srcRows
		}
		if err := fn(g.rows[i]); err != nil {
			return err
		}
	}
	clear(g.rows)
	g.rows, g.srcRows = g.rows[:0], 0
	return nil
}

// maxHeldDuplicates bounds the rows of one external_id held in memory: a
// JOIN gone wrong can repeat an id thousands of times. Past it the rows are
// only counted; the ones passed on name the full count.
const maxHeldDuplicates = 100

// stopped turns a callback's ErrStopStream into the end of the stream.
func stopped(err error) error {
	if errors.Is(err, ErrStopStream) {
		return nil
	}
	return err
}

// rowArena gathers the text columns of one row into one buffer, turned into
// a single string when the row is complete; each field is a substring of it.
// Values of low-cardinality columns are interned instead (bounded).
type rowArena struct {
	buf    []byte
	fields []arenaField
	intern map[string]string
}

type arenaField struct {
	dst        *string
	vals       *profile.Values // set instead of dst for packed attributes
	start, end int
}

const maxInterned = 4096

func newRowArena() *rowArena {
	return &rowArena{buf: make([]byte, 0, 1024), intern: make(map[string]string)}
}

// finish assigns the row's strings; call it after every Scan.
func (a *rowArena) finish() {
	if len(a.fields) > 0 {
		block := string(a.buf)
		for _, f := range a.fields {
			if f.vals != nil {
				*f.vals = profile.Packed(block[f.start:f.end])
				continue
			}
			*f.dst = block[f.start:f.end]
		}
	}
	a.buf, a.fields = a.buf[:0], a.fields[:0]
}

// arenaText is a pgx scan target (pgtype.BytesScanner) for a text column.
type arenaText struct {
	a      *rowArena
	dst    *string
	intern bool
}

// ScanBytes receives driver memory valid only during the call: it is copied.
func (t arenaText) ScanBytes(b []byte) error {
	switch {
	case len(b) == 0:
		*t.dst = ""
		return nil
	case t.intern:
		if s, ok := t.a.intern[string(b)]; ok { // no allocation for the lookup
			*t.dst = s
			return nil
		}
		if len(t.a.intern) < maxInterned {
			s := string(b)
			t.a.intern[s] = s
			*t.dst = s
			return nil
		}
	}
	start, end := t.a.find(b)
	if start < 0 {
		start = len(t.a.buf)
		t.a.buf = append(t.a.buf, b...)
		end = len(t.a.buf)
	}
	t.a.fields = append(t.a.fields, arenaField{dst: t.dst, start: start, end: end})
	return nil
}

// find returns the range of an earlier field of the row holding b, or -1.
// A row repeats itself a lot: the link's UPN, object id and groups, and in
// the nightly case the mirror's whole profile, are the source's; sharing
// them keeps the row's string near the size of its distinct values. A row
// has a few dozen fields, so the scan costs less than the bytes it saves.
func (a *rowArena) find(b []byte) (start, end int) {
	for _, f := range a.fields {
		if f.end-f.start == len(b) && bytes.Equal(a.buf[f.start:f.end], b) {
			return f.start, f.end
		}
	}
	return -1, -1
}

// packTargets returns the scan targets of the managed attributes of schema,
// in order, packing them into *dst: the values land one after the other in
// the row buffer, NUL-separated, at their schema positions (an unmanaged
// attribute between two managed ones is an empty field), and become one
// substring of the row's string.
func (a *rowArena) packTargets(dst *profile.Values, schema *profile.Schema) []any {
	var pos []int
	for i := range schema.Attrs {
		if schema.Managed(i) {
			pos = append(pos, i)
		}
	}
	p := &packing{a: a, dst: dst}
	targets := make([]any, len(pos))
	for k, i := range pos {
		targets[k] = packText{p: p, pos: i, first: k == 0, last: k == len(pos)-1}
	}
	if len(pos) == 0 {
		*dst = profile.Values{}
	}
	return targets
}

// packing is one profile.Values being scanned.
type packing struct {
	a     *rowArena
	dst   *profile.Values
	start int  // offset of the Values in the row buffer
	last  int  // schema position of the last value written
	any   bool // a value has been written
}

// packText is a pgx scan target (pgtype.BytesScanner) for one attribute
// column of a packing.
type packText struct {
	p           *packing
	pos         int
	first, last bool
}

// ScanBytes receives driver memory valid only during the call: it is copied.
// Separators are written only in front of a non-empty value, so empty
// trailing attributes cost nothing and a side with no values at all (no
// mirror row, no candidate) costs no bytes: the Values is then in
// profile.Pack's canonical form.
func (t packText) ScanBytes(b []byte) error {
	p, a := t.p, t.p.a
	if t.first {
		p.start, p.any = len(a.buf), false
	}
	if len(b) > 0 {
		gap := t.pos
		if p.any {
			gap -= p.last
		}
		for range gap {
			a.buf = append(a.buf, 0)
		}
		a.buf = append(a.buf, b...)
		p.last, p.any = t.pos, true
	}
	if t.last {
		if !p.any {
			*p.dst = profile.Values{}
			return nil
		}
		start, end := p.start, len(a.buf)
		if s, e := a.find(a.buf[start:end]); s >= 0 { // written for nothing: drop it
			a.buf = a.buf[:start]
			start, end = s, e
		}
		a.fields = append(a.fields, arenaField{vals: p.dst, start: start, end: end})
	}
	return nil
}

// arenaList is a pgx scan target (pgtype.ArraySetter) for a text[] column:
// the entries go through the row buffer like text columns, so a list costs
// its []string alone, not one string per entry as well.
type arenaList struct {
	a    *rowArena
	dst  *[]string
	elem arenaListEntry
}

// arenaListEntry is the scan target of the entry being scanned.
type arenaListEntry struct {
	l *arenaList
	i int
}

func newArenaList(a *rowArena, dst *[]string) *arenaList {
	l := &arenaList{a: a, dst: dst}
	l.elem.l = l
	return l
}

// SetDimensions allocates a fresh slice every row (the previous row's may
// still be referenced by fn); nil dimensions are a NULL array, nil like
// pgx's own []string scan.
func (l *arenaList) SetDimensions(dims []pgtype.ArrayDimension) error {
	if dims == nil {
		*l.dst = nil
		return nil
	}
	n := 0 // entries: the product of the lengths, 0 for '{}' (no dimension)
	for k, d := range dims {
		if k == 0 {
			n = 1
		}
		n *= max(int(d.Length), 0)
	}
	*l.dst = make([]string, n)
	return nil
}

// ScanIndex returns the one entry target, pointed at entry i: pgx scans
// each entry right after asking for it.
func (l *arenaList) ScanIndex(i int) any {
	l.elem.i = i
	return &l.elem
}

func (l *arenaList) ScanIndexType() any { return &arenaListEntry{} }

// ScanBytes receives driver memory valid only during the call: it is copied.
func (e *arenaListEntry) ScanBytes(b []byte) error {
	if b == nil {
		return fmt.Errorf("cannot scan NULL into list entry %d", e.i)
	}
	return arenaText{a: e.l.a, dst: &(*e.l.dst)[e.i]}.ScanBytes(b)
}
