package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/entraprov/entraprov/internal/store"
)

// Export formats of `worker history` and `worker show`, for auditors and
// SIEM ingestion: one record per run (history) or per operation (show),
// the same snake_case names as CSV header and JSON keys, times in UTC
// RFC 3339. The names are a contract: add columns at the end, never rename.
const (
	formatTable = "table"
	formatCSV   = "csv"
	formatJSONL = "jsonl"
)

var exportFormats = []string{formatTable, formatCSV, formatJSONL}

// checkFormat refuses an unknown --format, and --format with --json
// (two answers to one question).
func checkFormat(format string, asJSON bool) error {
	if !slices.Contains(exportFormats, format) {
		return withExit(exitUsage, fmt.Errorf("--format %q: want one of %s", format, strings.Join(exportFormats, ", ")))
	}
	if asJSON && format != formatTable {
		return withExit(exitUsage, fmt.Errorf("--json and --format %s: choose one", format))
	}
	return nil
}

// runExportColumns are the columns of a run record.
var runExportColumns = []string{"run_id", "job", "tenant_id", "trigger", "mode", "status", "scheduled_for",
	"started_at", "finished_at", "duration_seconds", "counts", "requests", "batches", "throttled", "retried",
	"error", "host", "pid"}

// opExportColumns are the columns of an operation record; the run's
// identity is repeated on each so that a line read alone says where it
// comes from.
var opExportColumns = []string{"run_id", "job", "tenant_id", "run_mode", "seq", "at", "external_id", "object_id",
	"action", "status", "http_status", "error_code", "message", "request_id", "attempts", "latency_ms", "changes"}

// exportTime is t in UTC RFC 3339 with fractions, "" for none.
func exportTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func runRecord(r store.Run) []any {
	var dur any
	if r.FinishedAt != nil {
		dur = r.FinishedAt.Sub(r.StartedAt).Seconds()
	}
	counts := r.Counts.Map()
	if counts == nil {
		counts = map[string]int{}
	}
	return []any{r.ID, r.Job, r.TenantID, r.Trigger, r.Mode, string(r.Status), exportTime(r.ScheduledFor),
		exportTime(&r.StartedAt), exportTime(r.FinishedAt), dur, counts, r.Stats.Requests, r.Stats.Batches,
		r.Stats.Throttled, r.Stats.Retried, r.ErrorSummary, r.Host, r.PID}
}

func opRecord(r store.Run, o store.Operation) []any {
	return []any{r.ID, r.Job, r.TenantID, r.Mode, o.Seq, exportTime(&o.At), o.ExternalID, o.ObjectID,
		o.Action, string(o.Status), o.HTTPStatus, o.ErrorCode, o.Message, o.RequestID, o.Attempts, o.LatencyMS,
		exportChanges(o.Changes)}
}

// exportChanges is the operation's changed attributes. The engine never
// stores a secret in them; a password or secret property is still blanked
// here so that an export can never be the place one leaks (a flag such as
// forceChangePasswordNextSignIn is not a secret and stays).
func exportChanges(c map[string]any) map[string]any {
	out := make(map[string]any, len(c))
	for k, v := range c {
		if l := strings.ToLower(k); l == "password" || l == "passwordprofile" || strings.Contains(l, "secret") {
			v = "[redacted]"
		}
		out[k] = v
	}
	return out
}

// writeExport writes the header and rows as CSV (RFC 4180, a header line)
// or JSON Lines (one object per line, keys in column order).
func writeExport(w io.Writer, format string, columns []string, rows [][]any) error {
	switch format {
	case formatCSV:
		cw := csv.NewWriter(w)
		if err := cw.Write(columns); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
		rec := make([]string, len(columns))
		for _, row := range rows {
			for i, v := range row {
				rec[i] = csvField(v)
			}
			if err := cw.Write(rec); err != nil {
				return fmt.Errorf("write csv: %w", err)
			}
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
		return nil
	case formatJSONL:
		for _, row := range rows {
			if err := writeJSONLine(w, columns, row); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("export format %q", format)
}

// csvField renders one value: nil as empty, maps as compact JSON with
// sorted keys (encoding/json sorts them), numbers in Go's shortest form.
func csvField(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		return string(b)
	}
}

// writeJSONLine writes one object with the keys in column order (a map
// would sort them), so CSV and JSON Lines read alike.
func writeJSONLine(w io.Writer, columns []string, row []any) error {
	var b strings.Builder
	b.WriteByte('{')
	for i, c := range columns {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(c)
		v, err := json.Marshal(row[i])
		if err != nil {
			return fmt.Errorf("write jsonl %s: %w", c, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteString("}\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write jsonl: %w", err)
	}
	return nil
}

func exportRuns(w io.Writer, format string, runs []store.Run) error {
	rows := make([][]any, 0, len(runs))
	for _, r := range runs {
		rows = append(rows, runRecord(r))
	}
	return writeExport(w, format, runExportColumns, rows)
}

func exportOperations(w io.Writer, format string, r store.Run, ops []store.Operation) error {
	rows := make([][]any, 0, len(ops))
	for _, o := range ops {
		rows = append(rows, opRecord(r, o))
	}
	return writeExport(w, format, opExportColumns, rows)
}
