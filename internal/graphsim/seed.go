package graphsim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

// App is an app registration in its home tenant.
type App struct {
	ClientID    string
	HomeTenant  string
	DisplayName string
	// MultiTenant apps can be consented in other tenants; single-tenant
	// apps only exist in their home tenant (AADSTS700016 elsewhere).
	MultiTenant bool
	Secrets     []Secret
	// Certificates are PEM-encoded public certificates ("keyCredentials").
	Certificates [][]byte
	// RequiredRoles are the application permissions the registration asks
	// for ("requiredResourceAccess"): what /{tenant}/adminconsent grants.
	RequiredRoles []string
}

// Secret is a client secret ("passwordCredential").
type Secret struct {
	Value   string
	Expires time.Time // zero = never
}

// UserSeed is a user that exists before the worker runs (unmanaged users,
// adoption candidates, conflicts).
type UserSeed struct {
	ID                string // optional; a UUID is generated when empty
	UserPrincipalName string
	DisplayName       string
	MailNickname      string // default: the UPN's local part
	EmployeeID        string
	AccountEnabled    bool
	// Properties are further Graph user properties by JSON name.
	Properties map[string]any
	ManagerID  string
	Groups     []string
	Deleted    bool // seed straight into deletedItems
}

// UserState is a user as the emulator holds it, for test assertions.
type UserState struct {
	ID                string
	UserPrincipalName string
	DisplayName       string
	MailNickname      string
	EmployeeID        string
	AccountEnabled    bool
	Deleted           bool
	DeletedAt         time.Time
	ManagerID         string
	Groups            []string
	Properties        map[string]any // copy; passwordProfile is never kept
	CreatedAt         time.Time
}

// Seeded describes what SeedDefault created.
type Seeded struct {
	TenantID     string
	Domain       string
	ClientID     string
	ClientSecret string
	CertPEM      []byte // app certificate, PEM
	KeyPEM       []byte // its RSA private key, PKCS#8 PEM
	// GroupIDs are the seeded groups by display name.
	GroupIDs map[string]string
}

// Default seed identifiers; deterministic so logs and fixtures compare.
var (
	DefaultTenantID = uuid.NewSHA1(uuid.NameSpaceURL, []byte("graphsim/tenant/contoso")).String()
	DefaultClientID = uuid.NewSHA1(uuid.NameSpaceURL, []byte("graphsim/app/entraprov")).String()
	DefaultDomain   = "contoso.example"
	// DefaultGroups are seeded by SeedDefault.
	DefaultGroups = []string{"All Staff", "Engineering", "Sales"}
)

// DefaultGroupID is the deterministic id of a default group.
func DefaultGroupID(name string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte("graphsim/group/"+name)).String()
}

// SeedDefault creates one tenant with a verified domain (contoso.example,
// plus contoso.onmicrosoft.com), one multi-tenant app with a secret and a
// certificate consented with User.ReadWrite.All and
// GroupMember.ReadWrite.All, and three groups.
func (s *Sim) SeedDefault() Seeded {
	s.AddTenant(DefaultTenantID, DefaultDomain, "contoso.onmicrosoft.com")
	certPEM, keyPEM, err := NewCertificate("entraprov graphsim app", 365*24*time.Hour)
	if err != nil {
		panic(fmt.Sprintf("graphsim: app certificate: %v", err))
	}
	secret := NewSecret()
	s.AddApp(App{
		ClientID: DefaultClientID, HomeTenant: DefaultTenantID, DisplayName: "entraprov", MultiTenant: true,
		Secrets:       []Secret{{Value: secret, Expires: s.now().Add(365 * 24 * time.Hour)}},
		Certificates:  [][]byte{certPEM},
		RequiredRoles: []string{"User.ReadWrite.All", "GroupMember.ReadWrite.All"},
	})
	s.Consent(DefaultTenantID, DefaultClientID, "User.ReadWrite.All", "GroupMember.ReadWrite.All")
	groups := map[string]string{}
	for _, g := range DefaultGroups {
		id := DefaultGroupID(g)
		s.AddGroup(DefaultTenantID, id, g)
		groups[g] = id
	}
	return Seeded{TenantID: DefaultTenantID, Domain: DefaultDomain, ClientID: DefaultClientID, ClientSecret: secret, CertPEM: certPEM, KeyPEM: keyPEM, GroupIDs: groups}
}

// NewSecret makes a client secret shaped like Entra's (40 characters with
// a "~").
func NewSecret() string {
	b := make([]byte, 28)
	_, _ = rand.Read(b)
	s := base64.RawURLEncoding.EncodeToString(b)
	return s[:3] + "8Q~" + s[3:37]
}

// NewCertificate makes a self-signed RSA-2048 certificate and its PKCS#8
// key, both PEM, as an app registration's key credential.
func NewCertificate(cn string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// AddTenant creates a tenant (or adds verified domains to an existing one).
func (s *Sim) AddTenant(id string, domains ...string) {
	id = strings.ToLower(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[id]
	if t == nil {
		t = newTenant(id, domains)
		s.tenants[id] = t
	} else {
		t.mu.Lock()
		for _, d := range domains {
			if !t.verified(d) {
				t.domains = append(t.domains, strings.ToLower(d))
			}
		}
		t.mu.Unlock()
	}
	for _, d := range domains {
		s.byDomain[strings.ToLower(d)] = t
	}
	// The home tenant of an app already registered there gets its
	// service principal (without roles) as soon as the tenant exists.
	for cid, a := range s.apps {
		if strings.EqualFold(a.app.HomeTenant, id) {
			ensureSP(t, cid)
		}
	}
}

func ensureSP(t *tenant, clientID string) *servicePrincipal {
	t.mu.Lock()
	defer t.mu.Unlock()
	sp := t.sps[clientID]
	if sp == nil {
		sp = &servicePrincipal{id: uuid.NewSHA1(uuid.NameSpaceURL, []byte("graphsim/sp/"+t.id+"/"+clientID)).String()}
		t.sps[clientID] = sp
	}
	return sp
}

// AddApp registers an app (or replaces its registration). Its home tenant
// gets a service principal with no roles until Consent.
func (s *Sim) AddApp(app App) {
	app.ClientID = strings.ToLower(app.ClientID)
	app.HomeTenant = strings.ToLower(app.HomeTenant)
	reg := &appReg{app: app}
	for _, p := range app.Certificates {
		if c, err := parseCertPEM(p); err == nil {
			reg.certs = append(reg.certs, c)
		}
	}
	s.mu.Lock()
	s.apps[app.ClientID] = reg
	home := s.tenants[app.HomeTenant]
	s.mu.Unlock()
	if home != nil {
		ensureSP(home, app.ClientID)
	}
}

// AddSecret adds a client secret to a registered app (rotation).
func (s *Sim) AddSecret(clientID string, sec Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[strings.ToLower(clientID)]; a != nil {
		a.app.Secrets = append(a.app.Secrets, sec)
	}
}

// RevokeSecret removes a client secret from an app.
func (s *Sim) RevokeSecret(clientID, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.apps[strings.ToLower(clientID)]; a != nil {
		kept := a.app.Secrets[:0]
		for _, sec := range a.app.Secrets {
			if sec.Value != value {
				kept = append(kept, sec)
			}
		}
		a.app.Secrets = kept
	}
}

func parseCertPEM(p []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			return nil, fmt.Errorf("no certificate in PEM")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// Consent is admin consent of clientID in tenantID: the app gets a service
// principal there and the application roles (added to those it had).
// Tokens issued afterwards carry the roles; earlier tokens keep theirs.
func (s *Sim) Consent(tenantID, clientID string, roles ...string) {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return
	}
	sp := ensureSP(t, strings.ToLower(clientID))
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range roles {
		if !contains(sp.roles, r) {
			sp.roles = append(sp.roles, r)
		}
	}
}

// RevokeConsent removes the given roles (all when none are named) from the
// app's service principal in the tenant.
func (s *Sim) RevokeConsent(tenantID, clientID string, roles ...string) {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	sp := t.sps[strings.ToLower(clientID)]
	if sp == nil {
		return
	}
	if len(roles) == 0 {
		sp.roles = nil
		return
	}
	kept := sp.roles[:0]
	for _, r := range sp.roles {
		if !contains(roles, r) {
			kept = append(kept, r)
		}
	}
	sp.roles = kept
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// AddGroup creates a security group.
func (s *Sim) AddGroup(tenantID, id, displayName string) {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	id = strings.ToLower(id)
	if g := t.groups[id]; g != nil {
		g.name = displayName
		return
	}
	g := &group{id: id, name: displayName, created: s.now(), members: map[string]struct{}{}}
	t.groups[id] = g
	t.gorder = append(t.gorder, g)
}

// AddUser creates a pre-existing user directly (no validation, no
// counters) and returns its id.
func (s *Sim) AddUser(tenantID string, us UserSeed) string {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return ""
	}
	id := strings.ToLower(us.ID)
	if id == "" {
		id = uuid.NewString()
	}
	props := map[string]any{}
	maps.Copy(props, us.Properties)
	delete(props, "passwordProfile")
	props["userPrincipalName"] = us.UserPrincipalName
	props["displayName"] = us.DisplayName
	props["accountEnabled"] = us.AccountEnabled
	nick := us.MailNickname
	if nick == "" {
		nick = strings.SplitN(us.UserPrincipalName, "@", 2)[0]
	}
	props["mailNickname"] = nick
	if us.EmployeeID != "" {
		props["employeeId"] = us.EmployeeID
	}
	now := s.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	u := t.newUser(id, props, now)
	u.managerID = strings.ToLower(us.ManagerID)
	for _, g := range us.Groups {
		if grp := t.groups[strings.ToLower(g)]; grp != nil {
			grp.add(u.id)
			u.groups[grp.id] = struct{}{}
		}
	}
	if us.Deleted {
		t.unindex(u)
		u.deleted, u.deletedAt = true, now
	}
	return id
}

// newUser stores and indexes a new active user; caller holds t.mu.
func (t *tenant) newUser(id string, props map[string]any, now time.Time) *user {
	t.nextUser++
	props["createdDateTime"] = now.UTC().Format(time.RFC3339)
	if _, ok := props["businessPhones"]; !ok {
		props["businessPhones"] = []any{}
	}
	u := &user{id: id, seq: t.nextUser, props: props, created: now, groups: map[string]struct{}{}}
	t.users[id] = u
	t.order = append(t.order, u)
	t.index(u)
	t.touch(u)
	return u
}

func (g *group) add(id string) bool {
	if _, ok := g.members[id]; ok {
		return false
	}
	g.members[id] = struct{}{}
	g.morder = append(g.morder, id)
	return true
}

func (g *group) remove(id string) bool {
	if _, ok := g.members[id]; !ok {
		return false
	}
	delete(g.members, id)
	for i, m := range g.morder {
		if m == id {
			g.morder = append(g.morder[:i], g.morder[i+1:]...)
			break
		}
	}
	return true
}

// Users returns every user of the tenant, soft-deleted ones included, in
// creation order.
func (s *Sim) Users(tenantID string) []UserState {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]UserState, 0, len(t.order))
	for _, u := range t.order {
		if u.purged {
			continue
		}
		out = append(out, u.state())
	}
	return out
}

// User returns one user by id or UPN (deleted ones too).
func (s *Sim) User(tenantID, ref string) (UserState, bool) {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return UserState{}, false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	u := t.users[strings.ToLower(ref)]
	if u == nil {
		u = t.byUPN[strings.ToLower(ref)]
	}
	if u == nil {
		for _, x := range t.users {
			if strings.EqualFold(x.str("userPrincipalName"), ref) {
				u = x
				break
			}
		}
	}
	if u == nil || u.purged {
		return UserState{}, false
	}
	return u.state(), true
}

// GroupMembers returns the member ids of a group.
func (s *Sim) GroupMembers(tenantID, groupID string) []string {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return nil
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	g := t.groups[strings.ToLower(groupID)]
	if g == nil {
		return nil
	}
	return append([]string(nil), g.morder...)
}

// ExpireDeltaTokens makes every delta token issued so far unusable, as if
// it had outlived the service's 7-day limit.
func (s *Sim) ExpireDeltaTokens(tenantID string) {
	t := s.tenant(strings.ToLower(tenantID))
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.minDelta = t.seq + 1
}

func (u *user) state() UserState {
	st := UserState{
		ID: u.id, UserPrincipalName: u.str("userPrincipalName"), DisplayName: u.str("displayName"),
		MailNickname: u.str("mailNickname"), EmployeeID: u.str("employeeId"), Deleted: u.deleted,
		DeletedAt: u.deletedAt, ManagerID: u.managerID, CreatedAt: u.created, Properties: maps.Clone(u.props),
	}
	st.AccountEnabled, _ = u.props["accountEnabled"].(bool)
	for g := range u.groups {
		st.Groups = append(st.Groups, g)
	}
	sort.Strings(st.Groups)
	return st
}

// AddExtensionProperty registers a directory schema extension on an
// application. Stub for the attrs branch to compile; the simprofile branch
// implements it (the lead keeps that one when merging).
func (s *Sim) AddExtensionProperty(appID, name, dataType string) (string, error) { return "", nil }
