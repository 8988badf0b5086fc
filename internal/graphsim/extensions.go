package graphsim

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// extDef is a directory extension (an extensionProperty of an
// application): a property named extension_{appIdWithoutDashes}_{name}
// that users of the tenants where the app exists may carry
// (learn.microsoft.com/graph/api/resources/extensionproperty).
type extDef struct {
	id       string
	name     string // full name, extension_<appid>_<short>
	clientID string
	appName  string
	home     string // the application's home tenant
	multi    bool   // the application is multi-tenant
	dataType string // canonical: String, Integer, LargeInteger, Boolean, DateTime, Binary
	multiVal bool
	targets  []string
}

// extDataTypes are the documented dataType values, by lower-case name.
var extDataTypes = map[string]string{"string": "String", "integer": "Integer", "largeinteger": "LargeInteger", "boolean": "Boolean", "datetime": "DateTime", "binary": "Binary"}

// extTargets are the documented targetObjects values (PascalCase).
var extTargets = map[string]bool{"User": true, "Group": true, "AdministrativeUnit": true, "Application": true, "Device": true, "Organization": true}

const extPrefix = "extension_"

func isExtensionName(n string) bool {
	return len(n) > len(extPrefix) && strings.EqualFold(n[:len(extPrefix)], extPrefix)
}

// extLookup resolves a property name to a directory extension usable on
// the users of one tenant; nil resolves nothing.
type extLookup func(name string) *extDef

func (x extLookup) find(name string) *extDef {
	if x == nil || !isExtensionName(name) {
		return nil
	}
	return x(name)
}

// extensions returns the lookup of tenant t: extensions registered on an
// application of t, or on a multi-tenant application with a service
// principal in t ("Directory extensions can also be available in
// multi-tenant apps that have been consented to in the tenant"). Call it
// without holding t.mu.
func (s *Sim) extensions(t *tenant) extLookup {
	return func(name string) *extDef {
		s.mu.RLock()
		e := s.exts[strings.ToLower(name)]
		s.mu.RUnlock()
		if e == nil || !contains(e.targets, "User") {
			return nil
		}
		if e.home == t.id {
			return e
		}
		if !e.multi {
			return nil
		}
		t.mu.RLock()
		_, ok := t.sps[e.clientID]
		t.mu.RUnlock()
		if !ok {
			return nil
		}
		return e
	}
}

// ErrExtension is returned by AddExtensionProperty for an unknown app or
// an undocumented data type.
var ErrExtension = errors.New("graphsim: extension property")

// AddExtensionProperty registers a directory extension for users on the
// application whose client id (appId) is appID, as POST
// /applications/{id}/extensionProperties does, and returns its full name
// extension_{appIdWithoutDashes}_{name}. dataType is one of String,
// Integer, LargeInteger, Boolean, DateTime, Binary.
func (s *Sim) AddExtensionProperty(appID, name, dataType string) (string, error) {
	e, msg := s.addExtension(appID, name, dataType, false, []string{"User"})
	if msg != "" {
		return "", fmt.Errorf("%w: %s", ErrExtension, msg)
	}
	return e.name, nil
}

// addExtension validates and stores an extension definition; msg is the
// refusal, "" on success.
func (s *Sim) addExtension(clientID, name, dataType string, multiVal bool, targets []string) (*extDef, string) {
	clientID = strings.ToLower(clientID)
	dt, ok := extDataTypes[strings.ToLower(dataType)]
	if !ok {
		return nil, "Invalid value specified for property 'dataType' of resource 'ExtensionProperty'."
	}
	if !extNameOK(name) {
		return nil, "Invalid value specified for property 'name' of resource 'ExtensionProperty'."
	}
	if len(targets) == 0 {
		return nil, "Invalid value specified for property 'targetObjects' of resource 'ExtensionProperty'."
	}
	for _, tg := range targets {
		if !extTargets[tg] {
			return nil, "Invalid value specified for property 'targetObjects' of resource 'ExtensionProperty'."
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	reg := s.apps[clientID]
	if reg == nil {
		return nil, fmt.Sprintf("no application with appId %s", clientID)
	}
	full := extPrefix + strings.ReplaceAll(clientID, "-", "") + "_" + name
	if s.exts[strings.ToLower(full)] != nil {
		return nil, "An extension property exists with the same name."
	}
	e := &extDef{
		id: uuid.NewSHA1(uuid.NameSpaceOID, []byte("ext/"+strings.ToLower(full))).String(), name: full,
		clientID: clientID, appName: reg.app.DisplayName, home: reg.app.HomeTenant, multi: reg.app.MultiTenant,
		dataType: dt, multiVal: multiVal, targets: append([]string(nil), targets...),
	}
	s.exts[strings.ToLower(full)] = e
	reg.exts = append(reg.exts, e)
	return e, ""
}

// extNameOK: letters, digits and underscores, starting with a letter (the
// docs say only "Not nullable"; the emulator keeps names that are safe in
// a property name and a $filter).
func extNameOK(n string) bool {
	if n == "" || len(n) > 120 {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case (c >= '0' && c <= '9') || c == '_':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// checkExtValue validates a value written to a directory extension by its
// dataType (extensionProperty, "dataType": Binary 256 bytes maximum,
// DateTime ISO 8601 stored in UTC, Integer 32-bit, LargeInteger 64-bit,
// String 256 characters maximum; for multi-valued extensions the limits
// apply per value) and returns it as stored.
func checkExtValue(e *extDef, v any) (any, *response) {
	if v == nil {
		return nil, nil
	}
	if e.multiVal {
		l, ok := v.([]any)
		if !ok {
			return nil, invalidValue(e.name)
		}
		out := make([]any, len(l))
		for i, x := range l {
			nv, r := checkExtScalar(e, x)
			if r != nil || nv == nil {
				return nil, invalidValue(e.name)
			}
			out[i] = nv
		}
		return out, nil
	}
	return checkExtScalar(e, v)
}

func checkExtScalar(e *extDef, v any) (any, *response) {
	bad := invalidValue(e.name)
	switch e.dataType {
	case "String":
		s, ok := v.(string)
		if !ok || utf8.RuneCountInString(s) > 256 {
			return nil, bad
		}
		return s, nil
	case "Boolean":
		if _, ok := v.(bool); !ok {
			return nil, bad
		}
		return v, nil
	case "Integer", "LargeInteger":
		n, ok := jsonInt(v)
		if !ok || (e.dataType == "Integer" && (n < math.MinInt32 || n > math.MaxInt32)) {
			return nil, bad
		}
		return n, nil
	case "DateTime":
		ts, ok := dateTimeValue(v)
		if !ok {
			return nil, bad
		}
		return ts, nil
	case "Binary":
		s, ok := v.(string)
		if !ok {
			return nil, bad
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) > 256 {
			return nil, bad
		}
		return s, nil
	}
	return nil, bad
}

// jsonInt reads a whole JSON number (decoded as float64, or json.Number).
func jsonInt(v any) (int64, bool) {
	switch n := v.(type) {
	case float64:
		if n != math.Trunc(n) || n < math.MinInt64 || n > math.MaxInt64 {
			return 0, false
		}
		return int64(n), true
	case json.Number:
		i, err := strconv.ParseInt(string(n), 10, 64)
		return i, err == nil
	}
	return 0, false
}

// parseDateTimeOffset reads an ISO 8601 date and time with a zone (Edm.DateTimeOffset as
// Graph writes it) and returns it in UTC, the form Graph stores and answers
// ("always in UTC time. For example, midnight UTC on Jan 1, 2014 is
// 2014-01-01T00:00:00Z").
func parseDateTimeOffset(s string) (string, bool) {
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "", false
	}
	return ts.UTC().Format(time.RFC3339), true
}

// dateTimeValue reads a written DateTimeOffset (a JSON string) and returns
// it in UTC.
func dateTimeValue(v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		return "", false
	}
	return parseDateTimeOffset(s)
}

// extJSON renders an extensionProperty.
func extJSON(e *extDef) map[string]any {
	return map[string]any{
		"id": e.id, "deletedDateTime": nil, "appDisplayName": e.appName, "dataType": e.dataType,
		"isMultiValued": e.multiVal, "isSyncedFromOnPremises": false, "name": e.name, "targetObjects": e.targets,
	}
}

// permWriteApp are the application permissions of Create extensionProperty
// (application-post-extensionproperty: least privileged
// Application.ReadWrite.OwnedBy; higher Application.ReadWrite.All,
// Directory.ReadWrite.All).
var permWriteApp = []string{"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.ReadWrite.All"}

// appByRef finds the registration whose application object id (or,
// for the alternate key form, client id) is ref, in tenant t.
func (s *Sim) appByRef(t *tenant, ref string, byAppID bool) *appReg {
	ref = strings.ToLower(ref)
	s.mu.RLock()
	defer s.mu.RUnlock()
	for cid, reg := range s.apps {
		if reg.app.HomeTenant != t.id {
			continue
		}
		if (byAppID && cid == ref) || (!byAppID && appObjectID(cid) == ref) {
			return reg
		}
	}
	return nil
}

// appObjectID is the emulator's application object id of a client id.
func appObjectID(clientID string) string {
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("app/"+clientID)).String()
}

func (s *Sim) createExtension(t *tenant, c *call) *response {
	reg := s.appByRef(t, c.params[0], strings.HasPrefix(c.route.pattern, "/applications("))
	if reg == nil {
		return notFound(c.params[0])
	}
	m, r := decodeObject(c.body)
	if r != nil {
		return r
	}
	name, _ := m["name"].(string)
	dt, _ := m["dataType"].(string)
	multi, _ := m["isMultiValued"].(bool)
	var targets []string
	if l, ok := m["targetObjects"].([]any); ok {
		for _, x := range l {
			s, _ := x.(string)
			targets = append(targets, s)
		}
	}
	e, msg := s.addExtension(reg.app.ClientID, name, dt, multi, targets)
	if msg != "" {
		return badRequest(msg)
	}
	out := extJSON(e)
	out["@odata.context"] = c.base + "/$metadata#applications('" + appObjectID(reg.app.ClientID) + "')/extensionProperties/$entity"
	return &response{status: 201, body: out}
}

func (s *Sim) listExtensions(t *tenant, c *call) *response {
	reg := s.appByRef(t, c.params[0], strings.HasPrefix(c.route.pattern, "/applications("))
	if reg == nil {
		return notFound(c.params[0])
	}
	s.mu.RLock()
	vals := make([]any, 0, len(reg.exts))
	for _, e := range reg.exts {
		vals = append(vals, extJSON(e))
	}
	s.mu.RUnlock()
	return &response{status: 200, body: map[string]any{
		"@odata.context": c.base + "/$metadata#applications('" + appObjectID(reg.app.ClientID) + "')/extensionProperties",
		"value":          vals,
	}}
}
