package graphsim

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SeedFile is the JSON document cmd/graphsim --seed reads.
//
//	{"tenants":[{"id":"…","domains":["contoso.example"],
//	  "groups":[{"id":"…","display_name":"Engineering"}],
//	  "users":[{"user_principal_name":"old@contoso.example","display_name":"Old","account_enabled":true}],
//	  "apps":[{"client_id":"…","client_secret":"","certificate":true,"multi_tenant":true,
//	           "roles":["User.ReadWrite.All","GroupMember.ReadWrite.All"],
//	           "consent":{"other-tenant-id":["User.ReadWrite.All"]}}]}]}
//
// An empty client_secret is generated; "none" means no secret.
type SeedFile struct {
	Tenants []SeedTenant `json:"tenants"`
}

// SeedTenant is one tenant of a seed file.
type SeedTenant struct {
	ID      string         `json:"id"`
	Domains []string       `json:"domains"`
	Groups  []SeedGroup    `json:"groups"`
	Users   []SeedUserJSON `json:"users"`
	Apps    []SeedApp      `json:"apps"`
}

// SeedGroup is a group of a seed file.
type SeedGroup struct {
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
}

// SeedUserJSON is a pre-existing user of a seed file.
type SeedUserJSON struct {
	ID                string         `json:"id"`
	UserPrincipalName string         `json:"user_principal_name"`
	DisplayName       string         `json:"display_name"`
	MailNickname      string         `json:"mail_nickname"`
	EmployeeID        string         `json:"employee_id"`
	AccountEnabled    bool           `json:"account_enabled"`
	ManagerID         string         `json:"manager_id"`
	Groups            []string       `json:"groups"`
	Deleted           bool           `json:"deleted"`
	Properties        map[string]any `json:"properties"`
}

// SeedApp is an app registered in the tenant that lists it.
type SeedApp struct {
	ClientID      string              `json:"client_id"`
	DisplayName   string              `json:"display_name"`
	MultiTenant   bool                `json:"multi_tenant"`
	ClientSecret  string              `json:"client_secret"`
	SecretExpires *time.Time          `json:"secret_expires"`
	Certificate   bool                `json:"certificate"`
	Roles         []string            `json:"roles"`          // admin consent in the home tenant
	RequiredRoles []string            `json:"required_roles"` // what /adminconsent grants; default: roles
	Consent       map[string][]string `json:"consent"`        // admin consent in other tenants
	// Extensions are directory extensions for users registered on the
	// app (AddExtensionProperty), e.g. {"name":"costCode","data_type":"String"}.
	Extensions []SeedExtension `json:"extensions"`
}

// SeedExtension is a directory extension of a seed file's app.
type SeedExtension struct {
	Name     string `json:"name"`
	DataType string `json:"data_type"`
}

// SeedResult is what a seed produced, shaped for cmd/graphsim's JSON line.
type SeedResult struct {
	Tenants []SeededTenant `json:"tenants"`
}

// SeededTenant lists a tenant's domains and apps with their credentials.
type SeededTenant struct {
	ID      string      `json:"id"`
	Domains []string    `json:"domains"`
	Apps    []SeededApp `json:"apps"`
	Groups  []SeedGroup `json:"groups,omitempty"`
}

// SeededApp carries an app's credentials: the secret itself and the paths
// of its certificate and key files.
type SeededApp struct {
	ClientID        string `json:"client_id"`
	ClientSecret    string `json:"client_secret,omitempty"`
	CertificateFile string `json:"certificate_file,omitempty"`
	KeyFile         string `json:"key_file,omitempty"`
	// Extensions are the full names (extension_{appId}_{name}) of the
	// directory extensions registered on the app.
	Extensions []string `json:"extensions,omitempty"`
}

// LoadSeedFile reads a seed file.
func LoadSeedFile(r io.Reader) (*SeedFile, error) {
	var sf SeedFile
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return nil, fmt.Errorf("seed file: %w", err)
	}
	for i, t := range sf.Tenants {
		if t.ID == "" || len(t.Domains) == 0 {
			return nil, fmt.Errorf("seed file: tenants[%d] needs an id and at least one domain", i)
		}
		for j, a := range t.Apps {
			if a.ClientID == "" {
				return nil, fmt.Errorf("seed file: tenants[%d].apps[%d] needs a client_id", i, j)
			}
		}
	}
	return &sf, nil
}

// ApplySeed creates what the seed file describes; certificates and keys
// are written (0600) under certDir.
func (s *Sim) ApplySeed(sf *SeedFile, certDir string) (SeedResult, error) {
	var res SeedResult
	for _, st := range sf.Tenants {
		s.AddTenant(st.ID, st.Domains...)
	}
	for _, st := range sf.Tenants {
		rt := SeededTenant{ID: strings.ToLower(st.ID), Domains: st.Domains}
		for _, g := range st.Groups {
			s.AddGroup(st.ID, g.ID, g.DisplayName)
			rt.Groups = append(rt.Groups, g)
		}
		for _, a := range st.Apps {
			app := App{ClientID: a.ClientID, HomeTenant: st.ID, DisplayName: a.DisplayName, MultiTenant: a.MultiTenant, RequiredRoles: a.RequiredRoles}
			if len(app.RequiredRoles) == 0 {
				app.RequiredRoles = a.Roles
			}
			ra := SeededApp{ClientID: strings.ToLower(a.ClientID)}
			switch a.ClientSecret {
			case "none":
			case "":
				ra.ClientSecret = NewSecret()
			default:
				ra.ClientSecret = a.ClientSecret
			}
			if ra.ClientSecret != "" {
				sec := Secret{Value: ra.ClientSecret}
				if a.SecretExpires != nil {
					sec.Expires = *a.SecretExpires
				}
				app.Secrets = append(app.Secrets, sec)
			}
			if a.Certificate {
				certPEM, keyPEM, err := NewCertificate(a.DisplayName+" "+a.ClientID, 365*24*time.Hour)
				if err != nil {
					return res, err
				}
				ra.CertificateFile = filepath.Join(certDir, ra.ClientID+".crt.pem")
				ra.KeyFile = filepath.Join(certDir, ra.ClientID+".key.pem")
				if err := os.WriteFile(ra.CertificateFile, certPEM, 0o600); err != nil {
					return res, fmt.Errorf("write certificate: %w", err)
				}
				if err := os.WriteFile(ra.KeyFile, keyPEM, 0o600); err != nil {
					return res, fmt.Errorf("write key: %w", err)
				}
				app.Certificates = append(app.Certificates, certPEM)
			}
			s.AddApp(app)
			if len(a.Roles) > 0 {
				s.Consent(st.ID, a.ClientID, a.Roles...)
			}
			for tid, roles := range a.Consent {
				s.Consent(tid, a.ClientID, roles...)
			}
			for _, e := range a.Extensions {
				full, err := s.AddExtensionProperty(a.ClientID, e.Name, e.DataType)
				if err != nil {
					return res, fmt.Errorf("seed app %s extension %q: %w", a.ClientID, e.Name, err)
				}
				ra.Extensions = append(ra.Extensions, full)
			}
			rt.Apps = append(rt.Apps, ra)
		}
		for _, u := range st.Users {
			s.AddUser(st.ID, UserSeed{ID: u.ID, UserPrincipalName: u.UserPrincipalName, DisplayName: u.DisplayName,
				MailNickname: u.MailNickname, EmployeeID: u.EmployeeID, AccountEnabled: u.AccountEnabled,
				ManagerID: u.ManagerID, Groups: u.Groups, Deleted: u.Deleted, Properties: u.Properties})
		}
		res.Tenants = append(res.Tenants, rt)
	}
	return res, nil
}

// SeedDefaultFiles is SeedDefault with the certificate and key written
// under certDir, reported in the cmd/graphsim shape.
func (s *Sim) SeedDefaultFiles(certDir string) (Seeded, SeedResult, error) {
	sd := s.SeedDefault()
	ra := SeededApp{ClientID: sd.ClientID, ClientSecret: sd.ClientSecret,
		CertificateFile: filepath.Join(certDir, sd.ClientID+".crt.pem"), KeyFile: filepath.Join(certDir, sd.ClientID+".key.pem")}
	if err := os.WriteFile(ra.CertificateFile, sd.CertPEM, 0o600); err != nil {
		return sd, SeedResult{}, fmt.Errorf("write certificate: %w", err)
	}
	if err := os.WriteFile(ra.KeyFile, sd.KeyPEM, 0o600); err != nil {
		return sd, SeedResult{}, fmt.Errorf("write key: %w", err)
	}
	var groups []SeedGroup
	for _, g := range DefaultGroups {
		groups = append(groups, SeedGroup{ID: sd.GroupIDs[g], DisplayName: g})
	}
	return sd, SeedResult{Tenants: []SeededTenant{{ID: sd.TenantID, Domains: []string{sd.Domain, "contoso.onmicrosoft.com"}, Apps: []SeededApp{ra}, Groups: groups}}}, nil
}

// ParseLatency reads a latency model: "none", "real" (DefaultLatency), or
// "read=40ms,write=120ms,batch=20ms,token=80ms,jitter=0.5" (unnamed parts
// keep zero).
func ParseLatency(v string) (Latency, error) {
	switch strings.TrimSpace(v) {
	case "", "none", "0":
		return Latency{}, nil
	case "real", "default":
		return DefaultLatency(), nil
	}
	var l Latency
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return l, fmt.Errorf("latency %q: want key=value parts", part)
		}
		if k == "jitter" {
			f, err := strconv.ParseFloat(val, 64)
			if err != nil || f < 0 || f > 1 {
				return l, fmt.Errorf("latency jitter %q: want a fraction 0..1", val)
			}
			l.Jitter = f
			continue
		}
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return l, fmt.Errorf("latency %s=%q: want a duration like 40ms", k, val)
		}
		switch k {
		case "read":
			l.Read = d
		case "write":
			l.Write = d
		case "batch":
			l.Batch = d
		case "token":
			l.Token = d
		default:
			return l, fmt.Errorf("latency: unknown key %q (read, write, batch, token, jitter)", k)
		}
	}
	return l, nil
}

// ParseFaults reads "none" or "5xx=0.01,drop=0.001,commit=0.5".
func ParseFaults(v string) (Faults, error) {
	var f Faults
	if v = strings.TrimSpace(v); v == "" || v == "none" {
		return f, nil
	}
	for _, part := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		x, err := strconv.ParseFloat(val, 64)
		if !ok || err != nil || x < 0 || x > 1 {
			return f, fmt.Errorf("faults %q: want key=probability (0..1)", part)
		}
		switch k {
		case "5xx":
			f.Rate5xx = x
		case "drop":
			f.DropRate = x
		case "commit":
			f.CommitBeforeFault = x
		default:
			return f, fmt.Errorf("faults: unknown key %q (5xx, drop, commit)", k)
		}
	}
	return f, nil
}
