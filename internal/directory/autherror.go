package directory

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// ErrConsentMissing matches (errors.Is) an *AuthError saying the app has no
// admin consent for the permissions it needs in the tenant.
var ErrConsentMissing = errors.New("admin consent missing")

// AuthError is a sign-in or authorisation failure translated into advice an
// operator can act on. It wraps the underlying azidentity or Graph error.
type AuthError struct {
	Code       int    // AADSTS code from the token endpoint; 0 for a Graph 403
	Tenant     string // tenant id or domain of the job
	ClientID   string
	Advice     string // what to do, one or two sentences
	Permission string // the application permission missing (consent errors)
	ConsentURL string // admin-consent page, when consent is the problem
	Consent    bool   // errors.Is(err, ErrConsentMissing)
	Err        error  // the azidentity or *GraphError cause
}

func (e *AuthError) Error() string {
	what := "authorisation failed"
	if e.Code != 0 {
		what = fmt.Sprintf("sign-in failed (AADSTS%d)", e.Code)
	}
	return fmt.Sprintf("%s for app %s in tenant %s: %s", what, e.ClientID, e.Tenant, e.Advice)
}

func (e *AuthError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrConsentMissing) true for consent failures.
func (e *AuthError) Is(target error) bool { return target == ErrConsentMissing && e.Consent }

var aadsts = regexp.MustCompile(`AADSTS(\d{4,9})`)

// aadstsCode extracts the first AADSTS code of a token-endpoint failure:
// from the JSON "error_codes" of the response body, else from "AADSTS…" in
// the description or in the error text.
func aadstsCode(err error) int {
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) && afe.RawResponse != nil {
		if body, rerr := runtime.Payload(afe.RawResponse); rerr == nil && len(body) > 0 {
			var v struct {
				ErrorCodes []int  `json:"error_codes"`
				Desc       string `json:"error_description"`
			}
			if json.Unmarshal(body, &v) == nil {
				if len(v.ErrorCodes) > 0 {
					return v.ErrorCodes[0]
				}
				if m := aadsts.FindStringSubmatch(v.Desc); m != nil {
					n, _ := strconv.Atoi(m[1])
					return n
				}
			}
		}
	}
	if err != nil {
		if m := aadsts.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

// authContext is what advice needs to know about the job.
type authContext struct {
	tenant, clientID string
	authority        string // https://login.microsoftonline.com/
	secretFrom       string // where the secret comes from, e.g. "file /etc/entraprov/secret"
	method           string
}

// translateTokenError turns a credential failure into an *AuthError when it
// carries an AADSTS code we can explain; other errors are returned wrapped.
func (ac authContext) translateTokenError(err error) error {
	if err == nil {
		return nil
	}
	var already *AuthError
	if errors.As(err, &already) {
		return err
	}
	code := aadstsCode(err)
	if code == 0 {
		return fmt.Errorf("get token for app %s in tenant %s: %w", ac.clientID, ac.tenant, err)
	}
	e := &AuthError{Code: code, Tenant: ac.tenant, ClientID: ac.clientID, Err: err}
	e.Advice = ac.advice(code, e)
	return e
}

func (ac authContext) advice(code int, e *AuthError) string {
	where := ac.secretFrom
	if where == "" {
		where = "the configured secret reference"
	}
	switch code {
	case 7000215:
		return fmt.Sprintf("the client secret is wrong: copy the secret's Value (not its ID) from the app registration's Certificates & secrets page into %s", where)
	case 7000222:
		return fmt.Sprintf("the client secret expired: create a new one in the app registration (Certificates & secrets) and update %s", where)
	case 700016:
		// A multi-tenant app no administrator of this tenant consented to
		// has no service principal there, which is what this code says: for
		// an ISV's new customer, the consent URL is the fix. Consent stays
		// false: a mistyped client_id or tenant_id says the same.
		e.ConsentURL = consentURL(ac.authority, ac.tenant, ac.clientID)
		return fmt.Sprintf("application %s is not found in tenant %s: check client_id and tenant_id; for a multi-tenant app, an administrator of that tenant must first consent to it by opening %s", ac.clientID, ac.tenant, e.ConsentURL)
	case 90002:
		return fmt.Sprintf("tenant %s does not exist: check tenant_id (a GUID or a verified domain) and the cloud setting", ac.tenant)
	case 65001, 500011:
		e.Consent = true
		e.Permission = "User.ReadWrite.All"
		e.ConsentURL = consentURL(ac.authority, ac.tenant, ac.clientID)
		if code == 500011 {
			return fmt.Sprintf("Microsoft Graph has no service principal in tenant %s, which happens when no admin consent was ever given: a tenant administrator must open %s", ac.tenant, e.ConsentURL)
		}
		return fmt.Sprintf("the app is not consented in tenant %s: a tenant administrator must grant the application permission %s by opening %s", ac.tenant, e.Permission, e.ConsentURL)
	case 700027:
		return "the certificate assertion was rejected: upload this certificate's public part to the app registration, or point certificate_file at the certificate that is registered"
	case 700024:
		return "the certificate assertion is outside its validity window: the host clock is wrong (check NTP / timedatectl)"
	case 7000218:
		return "the token request carried neither a secret nor a certificate: set auth.method and its credential"
	case 70011:
		return "the scope was refused: app-only requests must ask for {resource}/.default; check graph_url and cloud"
	case 7000112:
		return fmt.Sprintf("application %s is disabled in tenant %s: re-enable its enterprise application", ac.clientID, ac.tenant)
	default:
		return "the token endpoint refused the request; see the AADSTS code at https://login.microsoftonline.com/error?code=" + strconv.Itoa(code)
	}
}

// permissionFor names the application permission an operation needs.
func permissionFor(kind OpKind) string {
	switch kind {
	case OpAddMember, OpRemoveMember:
		return "GroupMember.ReadWrite.All"
	case "", "read":
		return "User.Read.All"
	case opReadApplication:
		return PermReadApplication
	default:
		return "User.ReadWrite.All"
	}
}

// denied turns a Graph 403 Authorization_RequestDenied into an *AuthError
// naming the permission and the consent URL; other errors pass through.
func (ac authContext) denied(ge *GraphError, kind OpKind) error {
	if ge == nil {
		return nil
	}
	if ge.Status != 403 || (ge.Code != "Authorization_RequestDenied" && ge.Code != "Forbidden") {
		return ge
	}
	perm := permissionFor(kind)
	e := &AuthError{Tenant: ac.tenant, ClientID: ac.clientID, Permission: perm, Consent: true,
		ConsentURL: consentURL(ac.authority, ac.tenant, ac.clientID), Err: ge}
	e.Advice = fmt.Sprintf("Graph answered 403 %s (request-id %s): the app lacks the application permission %s or its admin consent; add it under API permissions and have a tenant administrator open %s",
		ge.Code, ge.RequestID, perm, e.ConsentURL)
	return e
}
