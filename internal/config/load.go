package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Default returns the top-level defaults. Together with DefaultJob it is the
// one place where defaults live; Load applies them to keys absent from the
// file (an explicit value, even 0 or "", is kept and validated).
func Default() Config {
	return Config{
		Metrics: Metrics{Listen: "127.0.0.1:9464"},
		Log:     Log{Format: "auto", Level: "info"},
		Quarantine: Quarantine{AfterFailures: 5, FailurePercent: 40,
			MaxBackoff: Duration{Duration: 24 * time.Hour}},
		History:           History{Retention: Duration{Duration: 400 * 24 * time.Hour}},
		MaxConcurrentJobs: DefaultMaxConcurrentJobs,
		Tenants:           Tenants{Refresh: Duration{Duration: time.Minute}},
	}
}

// DefaultMaxConcurrentJobs is enough runs at once to fill one application's
// Graph write budget across tenants, and no more. Graph allows an app
// 70,000 writes per 5 min across all its tenants (≈ 233 writes/s) but only
// 3,000 per 150 s (20 writes/s) in any one tenant, so a single job (one
// tenant) can use at most 20/233 of the app's budget: 233 / 20 ≈ 11.7 jobs
// in different tenants saturate it; 12 rounds up. More runs at once would
// only share the same app budget more thinly (and hold more database
// connections), fewer would leave it unused while tenants wait.
const DefaultMaxConcurrentJobs = 12

// Database connections a running job may hold at once: its lock's own
// session, the source stream and a history or link write; plus a few for
// the daemon itself (skip records, retention, /healthz).
const (
	connsPerRun   = 3
	connsForSpare = 4
)

// runsForPool is the most runs a pool of m connections serves safely (see
// validateConcurrency), at least 1.
func runsForPool(m int) int { return max(1, (m-2)/2) }

// PoolSize is the connection pool size the worker opens: database.max_conns
// when set, else enough for max_concurrent_jobs runs (a run that cannot get
// a connection while every other run holds its lock's would wait forever).
// 0 means "keep pgx's and the URL's setting" (no jobs to size for).
func (c *Config) PoolSize() int32 {
	if c.Database.MaxConns > 0 {
		return c.Database.MaxConns
	}
	if c.MaxConcurrentJobs <= 0 {
		return 0
	}
	return int32(connsPerRun*c.MaxConcurrentJobs + connsForSpare)
}

// Engine tuning without a configuration key. They live here with the other
// defaults; the engine (internal/sync) reads them from here.
const (
	// DefaultFlushSize bounds how many history rows (and links) the engine
	// writes per database round trip.
	DefaultFlushSize = 256
	// DefaultFlushInterval bounds how long a finished result waits before
	// its history row and link are written.
	DefaultFlushInterval = 500 * time.Millisecond
	// DefaultBackoffBase is the per-user back-off period of a job whose
	// schedule gives none (user_backoff.base unset and no parsable
	// schedule).
	DefaultBackoffBase = time.Hour
)

// DefaultJob returns a job with every default applied. Tests building a
// Job in code should start from it.
func DefaultJob() Job {
	return Job{
		Cloud:          "public",
		CatchUp:        true,
		Source:         "entraprov.desired_users",
		Leaver:         Leaver{Action: "disable"},
		Budget:         DefaultBudget(),
		Matching:       Matching{AdoptBy: "none"},
		Password:       Password{ForceChangeNextSignIn: true, Length: 16},
		BatchSize:      20,
		MaxConcurrency: 4,
		MaxRunDuration: Duration{Duration: 6 * time.Hour},
		Webhook:        Webhook{Timeout: Duration{Duration: 10 * time.Second}, Retries: 3},
		UserBackoff:    UserBackoff{AfterFailures: 3, Max: Duration{Duration: 7 * 24 * time.Hour}},
	}
}

// DefaultBudget is the change budget of a job that sets none: 500 users or
// 10 % of the managed users of each kind, percent bounds applying above 10
// users. A renaming of every UPN or a reorganisation of groups needs an
// approval (worker sync --approve RUN); a night's leavers do not.
func DefaultBudget() ChangeBudget {
	b := Bound{MaxCount: 500, MaxPercent: 10}
	return ChangeBudget{PercentFloor: 10, Disables: b, Deletes: b, GroupRemovals: b, AttributeClears: b,
		UPNRenames: b, ManagerRemovals: b}
}

// Environment variables that override database.url, strongest first.
const (
	EnvDatabaseURL         = "ENTRAPROV_DATABASE_URL"
	EnvDatabaseURLFallback = "DATABASE_URL"
)

// Load reads the YAML file at path strictly (unknown keys are errors),
// applies defaults and the database URL environment overrides, and
// validates. Every problem is returned at once in a *ValidationError.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return load(path, data, os.LookupEnv)
}

// Parse is Load for YAML already in memory, without environment overrides.
func Parse(data []byte) (*Config, error) {
	return load("", data, func(string) (string, bool) { return "", false })
}

func load(path string, data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg, ix, problems, err := decode(data)
	if err != nil {
		if path != "" {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	applyEnv(cfg, lookupEnv)

	// A key that failed to decode holds a zero value; validating it again
	// would only repeat the problem in other words.
	// Likewise the key a typo'd one was meant to be, and its children:
	// "tennant_id: unknown key; did you mean tenant_id?" says it all.
	bad := make(map[string]bool, len(problems))
	var covered []string
	for _, p := range problems {
		bad[p.Key] = true
		if p.covers != "" {
			covered = append(covered, p.covers)
		}
	}
	for _, p := range cfg.problems() {
		if bad[p.Key] || slices.ContainsFunc(covered, func(k string) bool {
			return p.Key == k || strings.HasPrefix(p.Key, k+".") || strings.HasPrefix(p.Key, k+"[")
		}) {
			continue
		}
		p.Line = ix.lineOf(p.Key)
		// A database URL from the environment has no line: name the
		// variable, not the file's database section.
		if strings.HasPrefix(p.Key, "database.url") && strings.HasSuffix(cfg.Database.URLFrom, "DATABASE_URL") {
			p.Key, p.Line = "$"+cfg.Database.URLFrom, 0
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		// In file order, so the report reads top to bottom; whole-file
		// problems (no line) last.
		sort.SliceStable(problems, func(a, b int) bool {
			la, lb := problems[a].Line, problems[b].Line
			return la != 0 && (lb == 0 || la < lb)
		})
		return nil, &ValidationError{File: path, Problems: problems}
	}
	return cfg, nil
}

func applyEnv(cfg *Config, lookupEnv func(string) (string, bool)) {
	if cfg.Database.URL != "" {
		cfg.Database.URLFrom = "file"
	}
	for _, name := range []string{EnvDatabaseURL, EnvDatabaseURLFallback} {
		if v, ok := lookupEnv(name); ok && v != "" {
			cfg.Database.URL, cfg.Database.URLFrom = v, name
			return
		}
	}
}

// decode parses data into a Config with defaults applied. It returns an
// error only when the YAML cannot be read at all; problems with keys and
// types come back as Problems so they can join the validation report.
func decode(data []byte) (*Config, *index, []Problem, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, nil, fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	ix := newIndex(&root)
	var problems []Problem

	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
	case errors.As(err, &te):
		for _, msg := range te.Errors {
			problems = append(problems, ix.problemFor(msg))
		}
	default:
		return nil, nil, nil, fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err == nil {
		var extra yaml.Node
		if dec.Decode(&extra) == nil {
			problems = append(problems, Problem{Key: "", Line: extra.Line,
				Msg: "the file holds more than one YAML document; keep one (remove the extra ---)"})
		}
	}

	// A password inside the file's URL is a literal secret; the same URL
	// from the environment is the operator's choice.
	if what := urlSecret(cfg.Database.URL); what != "" {
		problems = append(problems, Problem{Key: "database.url", Line: ix.lineOf("database.url"),
			Msg: "contains a password; a literal secret is not allowed in the file, which is world-readable (" + what + "); remove it and use database.password: {file: /etc/entraprov/db-password} or {credential: db-password}, a passfile (~/.pgpass or passfile=), or set ENTRAPROV_DATABASE_URL in the service environment"})
	}

	def := Default()
	fillDefaults(reflect.ValueOf(cfg).Elem(), reflect.ValueOf(def), "", ix.present)
	defJob := DefaultJob()
	for i := range cfg.Jobs {
		k := fmt.Sprintf("jobs[%d]", i)
		fillDefaults(reflect.ValueOf(&cfg.Jobs[i]).Elem(), reflect.ValueOf(defJob), k, ix.present)
		problems = append(problems, legacyThreshold(&cfg.Jobs[i], k, ix)...)
	}
	// A file that sizes the pool by hand but predates max_concurrent_jobs
	// keeps working: the default then fits the pool instead of refusing it.
	if !ix.present["max_concurrent_jobs"] && cfg.Database.MaxConns > 0 {
		cfg.MaxConcurrentJobs = min(DefaultMaxConcurrentJobs, runsForPool(int(cfg.Database.MaxConns)))
	}
	return cfg, ix, problems, nil
}

// legacyThreshold maps deletion_threshold (the older, narrower key) onto
// change_budget.disables and .deletes, so files written for it keep their
// meaning. Its absent halves take the default bound's, as they always did.
// Setting both names is refused: which one wins would be a guess. It
// leaves Threshold nil: the engine and config show know Budget only.
func legacyThreshold(j *Job, k string, ix *index) []Problem {
	if j.Threshold == nil {
		return nil
	}
	def := DefaultBudget().Disables
	if !ix.present[k+".deletion_threshold.max_count"] {
		j.Threshold.MaxCount = def.MaxCount
	}
	if !ix.present[k+".deletion_threshold.max_percent"] {
		j.Threshold.MaxPercent = def.MaxPercent
	}
	var ps []Problem
	for _, kind := range []string{"disables", "deletes"} {
		if ix.present[k+".change_budget."+kind] {
			key := k + ".deletion_threshold"
			j.Threshold = nil
			return []Problem{{Key: key, Line: ix.lineOf(key),
				Msg: fmt.Sprintf("set together with change_budget.%s; deletion_threshold is the older name of change_budget.disables and .deletes: move its values there and remove it", kind)}}
		}
	}
	// Checked here, under the key the file uses; the effective config
	// (config show) then holds change_budget only, and loads back alike.
	v := &validator{}
	v.bound(k+".deletion_threshold", *j.Threshold)
	for _, p := range v.ps {
		p.Line = ix.lineOf(p.Key)
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		j.Budget.Disables, j.Budget.Deletes = *j.Threshold, *j.Threshold
	}
	j.Threshold = nil
	return ps
}

var (
	durationType  = reflect.TypeOf(Duration{})
	secretRefType = reflect.TypeOf(SecretRef{})
)

// fillDefaults copies def into dst for every key absent from the file.
func fillDefaults(dst, def reflect.Value, path string, present map[string]bool) {
	t := dst.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := yamlName(f)
		if name == "" {
			continue
		}
		p := joinKey(path, name)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType && f.Type != secretRefType {
			fillDefaults(dst.Field(i), def.Field(i), p, present)
			continue
		}
		if !present[p] {
			dst.Field(i).Set(def.Field(i))
		}
	}
}

func yamlName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index maps YAML lines to key paths, so decoder messages ("line 7: ...")
// can name the key, and records which keys the file sets.
type index struct {
	present map[string]bool     // key path -> set to a non-null value
	lines   map[string]int      // key path -> line
	onLine  map[int][]ixEntry   // line -> keys and values on it, in document order
	budget  int                 // bounds alias expansion (billion laughs)
	inAlias map[*yaml.Node]bool // alias targets being walked (cycles)
}

type ixEntry struct {
	path  string
	isKey bool
	node  *yaml.Node // the value node
}

func newIndex(root *yaml.Node) *index {
	ix := &index{present: map[string]bool{}, lines: map[string]int{}, onLine: map[int][]ixEntry{}, budget: 100000, inAlias: map[*yaml.Node]bool{}}
	ix.walk(root, "")
	return ix
}

func (ix *index) walk(n *yaml.Node, path string) {
	// Aliases can be recursive (x: &a [*a]) or fan out exponentially; the
	// config has no legitimate nesting deeper than a few levels.
	if n == nil || ix.budget <= 0 || len(path) > 512 {
		return
	}
	ix.budget--
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			ix.walk(c, path)
		}
	case yaml.AliasNode:
		if ix.inAlias[n.Alias] {
			return
		}
		ix.inAlias[n.Alias] = true
		ix.walk(n.Alias, path)
		delete(ix.inAlias, n.Alias)
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			ix.record(c.Line, p, false, c)
			ix.walk(c, p)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" || k.Value == "<<" {
				// Merged keys belong to this mapping.
				if v.Kind == yaml.SequenceNode {
					for _, c := range v.Content {
						ix.walk(c, path)
					}
				} else {
					ix.walk(v, path)
				}
				continue
			}
			p := joinKey(path, k.Value)
			ix.record(k.Line, p, true, v)
			ix.record(v.Line, p, false, v)
			target := v
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				target = v.Alias
			}
			if !(target.Kind == yaml.ScalarNode && target.Tag == "!!null") {
				ix.present[p] = true
			}
			ix.walk(v, p)
		}
	}
}

func (ix *index) record(line int, path string, isKey bool, v *yaml.Node) {
	if _, ok := ix.lines[path]; !ok {
		ix.lines[path] = line
	}
	ix.onLine[line] = append(ix.onLine[line], ixEntry{path: path, isKey: isKey, node: v})
}

// lineOf returns the line of key path, or of its nearest recorded parent.
func (ix *index) lineOf(path string) int {
	for path != "" {
		if l, ok := ix.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// find returns the entry on line whose key is name (or the last value
// entry when name is "").
func (ix *index) find(line int, name string, isKey bool) (ixEntry, bool) {
	es := ix.onLine[line]
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		if e.isKey != isKey {
			continue
		}
		if name == "" || e.path == name || strings.HasSuffix(e.path, "."+name) {
			return e, true
		}
	}
	return ixEntry{}, false
}

// findSecretRef returns the last scalar SecretRef key on line (a flow
// mapping may hold other keys after it), else the last value.
func (ix *index) findSecretRef(line int) (ixEntry, bool) {
	es := ix.onLine[line]
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		if !e.isKey && e.node != nil && e.node.Kind == yaml.ScalarNode && secretRefKeys[leafKey(e.path)] {
			return e, true
		}
	}
	return ix.find(line, "", false)
}

// secretRefKeys are the YAML keys of SecretRef fields.
var secretRefKeys = func() map[string]bool {
	m := map[string]bool{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for i := range t.NumField() {
			f := t.Field(i)
			if f.Type == secretRefType {
				m[yamlName(f)] = true
			} else if f.Type.Kind() == reflect.Struct {
				visit(f.Type)
			}
		}
	}
	visit(reflect.TypeOf(Job{}))
	visit(reflect.TypeOf(Config{}))
	return m
}()

// findTagged returns the last value entry on line whose node has tag (the
// decoder names the offending node only by line and tag).
func (ix *index) findTagged(line int, tag string) (ixEntry, bool) {
	es := ix.onLine[line]
	for i := len(es) - 1; i >= 0; i-- {
		if e := es[i]; !e.isKey && e.node != nil && e.node.ShortTag() == tag {
			return e, true
		}
	}
	return ix.find(line, "", false)
}

var (
	reLine       = regexp.MustCompile(`(?s)^line (\d+): (.*)$`)
	reUnmarshal  = regexp.MustCompile("(?s)^cannot unmarshal (!!\\w+)(?: `.*`)? into (.+)$")
	reNotFound   = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	reAlreadySet = regexp.MustCompile(`^field (\S+) already set in type \S+$`)
	reKeyTwice   = regexp.MustCompile(`(?s)^mapping key (.*) already defined at line (\d+)$`)
	reSecretKey  = regexp.MustCompile(`(?i)(secret|password|passwd|token|api_?key|private_?key)$`)
)

// problemFor turns one yaml.v3 decoder message into a Problem naming the
// key. This is the one place that reads yaml.v3's message formats; values
// in them are dropped because a mistyped key may hold a secret.
func (ix *index) problemFor(msg string) Problem {
	m := reLine.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]

	if rest == literalSecretMsg {
		e, _ := ix.findSecretRef(line)
		leaf := leafKey(e.path)
		return Problem{Key: e.path, Line: line, Msg: literalSecretHelp(leaf)}
	}
	if sm := reNotFound.FindStringSubmatch(rest); sm != nil {
		name, typ := sm[1], sm[2]
		e, ok := ix.find(line, name, true)
		key := name
		if ok {
			key = e.path
		}
		if reSecretKey.MatchString(name) && e.node != nil && e.node.Kind == yaml.ScalarNode {
			return Problem{Key: key, Line: line, Msg: "unknown key, and a literal secret is not allowed in the file; reference it instead, e.g. client_secret: {file: /etc/entraprov/secret} or {credential: graph-secret} (systemd LoadCredential=)"}
		}
		p := Problem{Key: key, Line: line, Msg: unknownKeyHelp(name, typ)}
		if s := closest(name, knownKeys()[typ]); s != "" {
			p.covers = strings.TrimSuffix(key, name) + s
		}
		return p
	}
	if sm := reAlreadySet.FindStringSubmatch(rest); sm != nil {
		e, _ := ix.find(line, sm[1], true)
		return Problem{Key: orStr(e.path, sm[1]), Line: line, Msg: "key appears twice in the same mapping; keep one"}
	}
	if sm := reKeyTwice.FindStringSubmatch(rest); sm != nil {
		e, _ := ix.find(line, "", true)
		return Problem{Key: e.path, Line: line, Msg: fmt.Sprintf("key appears twice (first at line %s); keep one", sm[2])}
	}
	if sm := reUnmarshal.FindStringSubmatch(rest); sm != nil {
		e, _ := ix.findTagged(line, sm[1])
		return Problem{Key: e.path, Line: line, Msg: fmt.Sprintf("want %s, got %s", goTypeName(sm[2]), tagName(sm[1]))}
	}
	e, _ := ix.find(line, "", false)
	return Problem{Key: e.path, Line: line, Msg: rest}
}

func orStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func leafKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

func literalSecretHelp(leaf string) string {
	if leaf == "" {
		leaf = "client_secret"
	}
	return fmt.Sprintf("a literal secret is not allowed; use %s: {file: /etc/entraprov/secret} or {credential: graph-secret} (systemd LoadCredential=), or {env: NAME}", leaf)
}

func unknownKeyHelp(name, typ string) string {
	keys := knownKeys()[typ]
	if len(keys) == 0 {
		return "unknown key"
	}
	if s := closest(name, keys); s != "" {
		return fmt.Sprintf("unknown key; did you mean %s? (known here: %s)", s, strings.Join(keys, ", "))
	}
	return fmt.Sprintf("unknown key (known here: %s)", strings.Join(keys, ", "))
}

// knownKeys maps "config.Auth" and friends to their YAML keys.
func knownKeys() map[string][]string {
	out := map[string][]string{}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || out[t.String()] != nil {
			return
		}
		var keys []string
		for i := range t.NumField() {
			f := t.Field(i)
			if n := yamlName(f); n != "" {
				keys = append(keys, n)
				visit(f.Type)
			}
		}
		out[t.String()] = keys
	}
	visit(reflect.TypeOf(Config{}))
	return out
}

// closest returns the key within edit distance 2 of name, if any.
func closest(name string, keys []string) string {
	best, bestD := "", 3
	for _, k := range keys {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func goTypeName(t string) string {
	switch t {
	case "int", "int32", "int64", "uint", "uint16":
		return "an integer"
	case "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	case "[]string":
		return "a list of strings"
	case "[]config.Job":
		return "a list of jobs"
	}
	if strings.HasPrefix(t, "config.") {
		return "a mapping"
	}
	return t
}

func tagName(tag string) string {
	switch tag {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!null":
		return "nothing"
	}
	return tag
}
