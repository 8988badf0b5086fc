package config

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// literalSecretMsg marks, inside a yaml.TypeError, a secret written inline.
// The decoder reports it with the line; load.go turns it into a Problem.
const literalSecretMsg = "literal secret"

// IsZero reports whether no reference is set.
func (r SecretRef) IsZero() bool { return r.File == "" && r.Env == "" && r.Credential == "" }

// String describes where the secret lives ("file /etc/x", "env NAME",
// "credential NAME"); it never contains the secret.
func (r SecretRef) String() string {
	var parts []string
	if r.File != "" {
		parts = append(parts, "file "+r.File)
	}
	if r.Env != "" {
		parts = append(parts, "env "+r.Env)
	}
	if r.Credential != "" {
		parts = append(parts, "credential "+r.Credential)
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ", ")
}

// ErrSecretUnset is returned by Read for an empty reference.
var ErrSecretUnset = errors.New("no secret reference set")

// Read returns the secret with trailing newlines trimmed (files written by
// echo or editors end in one). Errors name the reference, never the value.
func (r SecretRef) Read(ctx context.Context) (string, error) {
	b, err := r.ReadBytes(ctx)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("secret %s is empty", r)
	}
	return s, nil
}

// ReadBytes returns the raw content (a PEM or PFX needs the exact bytes).
func (r SecretRef) ReadBytes(ctx context.Context) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch {
	case r.File != "" && r.Env == "" && r.Credential == "":
		b, err := os.ReadFile(r.File)
		if err != nil {
			return nil, fmt.Errorf("read secret %s: %w", r, err)
		}
		return b, nil
	case r.Env != "" && r.File == "" && r.Credential == "":
		v, ok := os.LookupEnv(r.Env)
		if !ok {
			return nil, fmt.Errorf("read secret %s: environment variable %s is not set", r, r.Env)
		}
		return []byte(v), nil
	case r.Credential != "" && r.File == "" && r.Env == "":
		p, err := CredentialPath(r.Credential)
		if err != nil {
			return nil, fmt.Errorf("read secret %s: %w", r, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read secret %s: %w", r, err)
		}
		return b, nil
	case r.IsZero():
		return nil, ErrSecretUnset
	default:
		return nil, fmt.Errorf("secret %s: set exactly one of file, env, credential", r)
	}
}

// CredentialPath is where systemd put the credential LoadCredential=name.
func CredentialPath(name string) (string, error) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		// Run by hand (worker check on the host) the variable is missing:
		// say how to point it at the directory systemd loads from.
		return "", fmt.Errorf("$CREDENTIALS_DIRECTORY is not set: systemd sets it for LoadCredential=%s:/path/to/file; "+
			"when running by hand, set it to the directory holding the file named %s, e.g. CREDENTIALS_DIRECTORY=/etc/entraprov/credentials worker check "+
			"(or use {file: /path/to/file})", name, name)
	}
	return filepath.Join(dir, name), nil
}

// MarshalYAML prints only the field that is set (config show).
func (r SecretRef) MarshalYAML() (any, error) {
	m := map[string]string{}
	if r.File != "" {
		m["file"] = r.File
	}
	if r.Env != "" {
		m["env"] = r.Env
	}
	if r.Credential != "" {
		m["credential"] = r.Credential
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// UnmarshalYAML refuses an inline secret without ever echoing it, and
// checks keys itself because a custom unmarshaler bypasses KnownFields.
func (r *SecretRef) UnmarshalYAML(n *yaml.Node) error {
	var errs []string
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, literalSecretMsg)}}
	case yaml.MappingNode:
	default:
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want {file: PATH}, {env: NAME} or {credential: NAME}, got a %s", n.Line, kindName(n))}}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var dst *string
		switch k.Value {
		case "file":
			dst = &r.File
		case "env":
			dst = &r.Env
		case "credential":
			dst = &r.Credential
		default:
			errs = append(errs, fmt.Sprintf("line %d: field %s not found in type config.SecretRef", k.Line, k.Value))
			continue
		}
		if v.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Sprintf("line %d: want a string, got a %s", v.Line, kindName(v)))
			continue
		}
		*dst = v.Value
	}
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	return nil
}

// dbSecretParams are the connection parameters (libpq's, which pgx
// follows) whose value is a secret: the password, the client key's
// passphrase, and the OAuth client secret of PostgreSQL 18. passfile,
// sslkey and sslcert name files and are not secrets.
var dbSecretParams = []string{"password", "sslpassword", "oauth_client_secret"}

// dsnSecret matches a secret parameter of a key=value connection string,
// its value quoted or not.
var dsnSecret = regexp.MustCompile(`(?i)(^|\s)(` + strings.Join(dbSecretParams, "|") + `)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)

func isDBSecretParam(key string) bool {
	for _, p := range dbSecretParams {
		if strings.EqualFold(key, p) {
			return true
		}
	}
	return false
}

// RedactURL hides the secrets of a postgres:// URL (user:password@ and the
// query parameters password, sslpassword, oauth_client_secret) or of a
// key=value DSN, keeping the rest readable.
func RedactURL(s string) string {
	if isURL(s) {
		u, err := url.Parse(s)
		if err != nil {
			return "(unparsable URL)"
		}
		if u.RawQuery != "" {
			parts := strings.Split(u.RawQuery, "&")
			for i, p := range parts {
				k, _, _ := strings.Cut(p, "=")
				if dk, err := url.QueryUnescape(k); err != nil || isDBSecretParam(dk) {
					parts[i] = k + "=xxxxx"
				}
			}
			u.RawQuery = strings.Join(parts, "&")
		}
		return u.Redacted()
	}
	return dsnSecret.ReplaceAllString(s, "${1}${2}=xxxxx")
}

// urlSecret names the secret a database URL or DSN carries ("" if none):
// "user:password@" or the parameter (sslpassword=, ...).
func urlSecret(s string) string {
	if isURL(s) {
		u, err := url.Parse(s)
		if err != nil {
			return ""
		}
		if _, ok := u.User.Password(); ok {
			return "user:password@"
		}
		// Keys are compared decoded (pass%77ord is password); one that does
		// not decode may be anything, and RedactURL masks it too.
		for _, p := range strings.Split(u.RawQuery, "&") {
			k, _, _ := strings.Cut(p, "=")
			dk, err := url.QueryUnescape(k)
			switch {
			case err != nil:
				return "an undecodable query parameter"
			case isDBSecretParam(dk):
				return strings.ToLower(dk) + "="
			}
		}
		return ""
	}
	if m := dsnSecret.FindStringSubmatch(s); m != nil {
		return strings.ToLower(m[2]) + "="
	}
	return ""
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// ConnString returns URL with Password (if referenced) filled in, ready for
// pgxpool.ParseConfig. The result holds a secret: never log it.
func (d Database) ConnString(ctx context.Context) (string, error) {
	if d.Password.IsZero() {
		return d.URL, nil
	}
	pw, err := d.Password.Read(ctx)
	if err != nil {
		return "", fmt.Errorf("database.password: %w", err)
	}
	if isURL(d.URL) {
		u, err := url.Parse(d.URL)
		if err != nil {
			return "", fmt.Errorf("database.url: not a valid URL")
		}
		user := ""
		if u.User != nil {
			user = u.User.Username()
		}
		u.User = url.UserPassword(user, pw)
		return u.String(), nil
	}
	esc := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
	return strings.TrimSpace(d.URL + " password='" + esc + "'"), nil
}

// Redacted returns a copy safe to print: the database URL loses its
// secrets and a literal webhook URL keeps only its scheme and host. Secret
// references hold no secrets and are kept.
func (c Config) Redacted() Config {
	c.Database.URL = RedactURL(c.Database.URL)
	c.Jobs = append([]Job(nil), c.Jobs...)
	for i := range c.Jobs {
		if l := c.Jobs[i].Webhook.URL.Literal; l != "" {
			c.Jobs[i].Webhook.URL.Literal = redactHTTPURL(l)
		}
	}
	return c
}

// URLRef is a URL written in the file or, since most alerting systems put
// a bearer token in their webhook URLs (path or query), a reference to a
// secret holding it: {file: PATH}, {env: NAME} or {credential: NAME}.
type URLRef struct {
	Literal string    `yaml:"-"`
	Ref     SecretRef `yaml:"-"`
}

// IsZero reports whether no URL is configured.
func (u URLRef) IsZero() bool { return u.Literal == "" && u.Ref.IsZero() }

// Resolve returns the URL, reading the reference if it is one. The result
// may hold a credential: never log it.
func (u URLRef) Resolve(ctx context.Context) (string, error) {
	if u.Literal != "" {
		return u.Literal, nil
	}
	return u.Ref.Read(ctx)
}

// String says where the URL is without its credential: scheme and host of
// a literal, the location of a reference.
func (u URLRef) String() string {
	if u.Literal != "" {
		return redactHTTPURL(u.Literal)
	}
	return u.Ref.String()
}

// MarshalYAML writes the literal (Config.Redacted shortens it first) or
// the reference.
func (u URLRef) MarshalYAML() (any, error) {
	if u.Literal != "" {
		return u.Literal, nil
	}
	return u.Ref.MarshalYAML()
}

// UnmarshalYAML takes a string as a literal URL and a mapping as a secret
// reference.
func (u *URLRef) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if n.Tag != "!!null" {
			u.Literal = n.Value
		}
		return nil
	}
	return u.Ref.UnmarshalYAML(n)
}

// redactHTTPURL keeps the scheme and host: the path and query of a webhook
// URL often carry its token.
func redactHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + "/…"
}
