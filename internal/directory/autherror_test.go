package directory

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestTranslateTokenError(t *testing.T) {
	ac := authContext{tenant: "contoso.example", clientID: "app-1", authority: "https://login.microsoftonline.com/",
		secretFrom: "file /etc/entraprov/secret", method: "secret"}
	consent := "https://login.microsoftonline.com/contoso.example/adminconsent?client_id=app-1"
	tests := []struct {
		name    string
		code    int
		advice  []string
		consent bool
	}{
		{"wrong_secret_says_copy_the_value", 7000215, []string{"client secret is wrong", "file /etc/entraprov/secret"}, false},
		{"expired_secret_says_create_a_new_one_and_where", 7000222, []string{"client secret expired", "create a new one", "update file /etc/entraprov/secret"}, false},
		{"unknown_app_names_app_and_tenant", 700016, []string{"app-1", "contoso.example"}, false},
		{"unknown_tenant", 90002, []string{"tenant contoso.example does not exist"}, false},
		{"consent_missing_prints_the_consent_url", 65001, []string{consent, "User.ReadWrite.All"}, true},
		{"graph_principal_missing_is_consent", 500011, []string{consent}, true},
		{"bad_certificate_assertion", 700027, []string{"certificate"}, false},
		{"clock_skew", 700024, []string{"clock"}, false},
		{"no_credential_sent", 7000218, []string{"neither a secret nor a certificate"}, false},
		{"invalid_scope", 70011, []string{".default"}, false},
		{"unknown_code_links_the_lookup_page", 1234567, []string{"error?code=1234567"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cause := fmt.Errorf("ClientSecretCredential authentication failed: AADSTS%d: something. Trace ID: x", tt.code)
			err := ac.translateTokenError(cause)
			var ae *AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("not an *AuthError: %v", err)
			}
			if ae.Code != tt.code || ae.Tenant != "contoso.example" || ae.ClientID != "app-1" {
				t.Fatalf("got %+v", ae)
			}
			for _, s := range tt.advice {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if errors.Is(err, ErrConsentMissing) != tt.consent {
				t.Errorf("errors.Is(ErrConsentMissing) = %v, want %v", !tt.consent, tt.consent)
			}
			if !errors.Is(err, cause) {
				t.Error("cause not wrapped")
			}
		})
	}
	t.Run("error_without_code_is_wrapped_not_translated", func(t *testing.T) {
		cause := errors.New("dial tcp: connection refused")
		err := ac.translateTokenError(cause)
		var ae *AuthError
		if errors.As(err, &ae) || !errors.Is(err, cause) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestDeniedNamesPermissionAndConsentURL(t *testing.T) {
	ac := authContext{tenant: "t-1", clientID: "app-1", authority: "https://login.microsoftonline.us/"}
	ge := &GraphError{Status: 403, Code: "Authorization_RequestDenied", Message: "Insufficient privileges to complete the operation.", RequestID: "rq"}
	err := ac.denied(ge, OpAddMember)
	if !errors.Is(err, ErrConsentMissing) {
		t.Fatal("403 is not ErrConsentMissing")
	}
	var back *GraphError
	if !errors.As(err, &back) || back != ge {
		t.Fatal("GraphError not reachable with errors.As")
	}
	for _, s := range []string{"GroupMember.ReadWrite.All", "https://login.microsoftonline.us/t-1/adminconsent?client_id=app-1", "rq"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%q lacks %q", err, s)
		}
	}
	if err := ac.denied(&GraphError{Status: 400, Code: "Request_BadRequest"}, OpCreate); errors.Is(err, ErrConsentMissing) {
		t.Fatal("400 taken for consent")
	}
}
