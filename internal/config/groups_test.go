package config

import (
	"reflect"
	"testing"
)

// allowed_groups is optional: unset stays nil (any group id of the source
// is honoured, as before the key), a list of GUIDs is kept as written.
func TestLoad_allowedGroups(t *testing.T) {
	if g := mustParse(t, jobYAML()).Jobs[0].AllowedGroups; g != nil {
		t.Errorf("unset allowed_groups = %#v; want nil", g)
	}
	ids := []string{"0f5c9c1e-6f9a-4a41-a1f1-3e0e0d1e2f30", "3F2A0C1E-5B6D-4E7F-8A9B-0C1D2E3F4A5B"}
	c := mustParse(t, jobYAML("allowed_groups: ["+ids[0]+", "+ids[1]+"]"))
	if got := c.Jobs[0].AllowedGroups; !reflect.DeepEqual(got, ids) {
		t.Errorf("allowed_groups = %v; want %v", got, ids)
	}
}
