package graphsim_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/entraprov/entraprov/internal/graphsim"
)

var graphScopes = []string{"https://graph.microsoft.com/.default"}

func clientOptions(srv *graphsim.Server) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: srv.AuthorityHost, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}},
		Transport: srv.Client(),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

func secretCredential(t testing.TB, srv *graphsim.Server, tenantID, clientID, secret string) *azidentity.ClientSecretCredential {
	t.Helper()
	cred, err := azidentity.NewClientSecretCredential(tenantID, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: clientOptions(srv), DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("secret credential: %v", err)
	}
	return cred
}

func certCredential(t testing.TB, srv *graphsim.Server, seeded graphsim.Seeded) *azidentity.ClientCertificateCredential {
	t.Helper()
	certs, key := parseCertKey(t, seeded.CertPEM, seeded.KeyPEM)
	cred, err := azidentity.NewClientCertificateCredential(seeded.TenantID, seeded.ClientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
		ClientOptions: clientOptions(srv), DisableInstanceDiscovery: true,
	})
	if err != nil {
		t.Fatalf("certificate credential: %v", err)
	}
	return cred
}

func parseCertKey(t testing.TB, certPEM, keyPEM []byte) ([]*x509.Certificate, crypto.PrivateKey) {
	t.Helper()
	certs, key, err := azidentity.ParseCertificates(append(append([]byte{}, certPEM...), keyPEM...), nil)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return certs, key
}

// graphClient builds the real SDK client against the emulator, keeping
// kiota's default middleware (retry, compression, ...) over a transport
// that trusts the emulator's CA.
func graphClient(t testing.TB, srv *graphsim.Server, cred azcore.TokenCredential) (*msgraphsdk.GraphServiceClient, *msgraphsdk.GraphRequestAdapter) {
	t.Helper()
	auth, err := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred, graphScopes, []string{"127.0.0.1"})
	if err != nil {
		t.Fatalf("auth provider: %v", err)
	}
	mw := msgraphcore.GetDefaultMiddlewaresWithOptions(&msgraphcore.GraphClientOptions{GraphServiceVersion: "v1.0", GraphServiceLibraryVersion: "1.89.0"})
	hc := &http.Client{Transport: khttp.NewCustomTransportWithParentTransport(srv.Transport(), mw...), Timeout: 60 * time.Second}
	adapter, err := msgraphsdk.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, hc)
	if err != nil {
		t.Fatalf("adapter: %v", err)
	}
	adapter.SetBaseUrl(srv.GraphURL)
	return msgraphsdk.NewGraphServiceClient(adapter), adapter
}

func newUser(upn, name string) models.Userable {
	u := models.NewUser()
	u.SetAccountEnabled(ptr(true))
	u.SetDisplayName(ptr(name))
	u.SetMailNickname(ptr(strings.SplitN(upn, "@", 2)[0]))
	u.SetUserPrincipalName(ptr(upn))
	pp := models.NewPasswordProfile()
	pp.SetPassword(ptr("Xy7!" + "longenough"))
	pp.SetForceChangePasswordNextSignIn(ptr(true))
	u.SetPasswordProfile(pp)
	return u
}

func ptr[T any](v T) *T { return &v }

func odataCode(err error) string {
	var oe *odataerrors.ODataError
	if errors.As(err, &oe) && oe.GetErrorEscaped() != nil && oe.GetErrorEscaped().GetCode() != nil {
		return *oe.GetErrorEscaped().GetCode()
	}
	return ""
}

// TestSDKSecretCredentialUserLifecycle drives the real azidentity secret
// credential and msgraph-sdk-go through create, get, list (page iterator),
// patch and delete over TLS.
func TestSDKSecretCredentialUserLifecycle(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	cred := secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret)
	client, adapter := graphClient(t, srv, cred)

	created, err := client.Users().Post(ctx, newUser("alice@"+seeded.Domain, "Alice"), nil)
	if err != nil {
		t.Fatalf("create: %v (code %s)", err, odataCode(err))
	}
	id := *created.GetId()
	for i := 0; i < 4; i++ {
		upn := "user" + string(rune('a'+i)) + "@" + seeded.Domain
		if _, err := client.Users().Post(ctx, newUser(upn, "User "+upn), nil); err != nil {
			t.Fatalf("create %s: %v", upn, err)
		}
	}
	got, err := client.Users().ByUserId(id).Get(ctx, nil)
	if err != nil || *got.GetUserPrincipalName() != "alice@"+seeded.Domain {
		t.Fatalf("get: %v %v", err, got)
	}
	// Page through with $top=2 so the iterator must follow nextLinks.
	resp, err := client.Users().Get(ctx, &users.UsersRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.UsersRequestBuilderGetQueryParameters{Top: ptr(int32(2)), Select: []string{"id", "userPrincipalName"}},
	})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	it, err := msgraphcore.NewPageIterator[models.Userable](resp, adapter, models.CreateUserCollectionResponseFromDiscriminatorValue)
	if err != nil {
		t.Fatalf("iterator: %v", err)
	}
	n := 0
	if err := it.Iterate(ctx, func(u models.Userable) bool { n++; return true }); err != nil {
		t.Fatalf("iterate: %v", err)
	}
	if n != 5 {
		t.Fatalf("iterated %d users, want 5", n)
	}
	patch := models.NewUser()
	patch.SetJobTitle(ptr("Engineer"))
	if _, err := client.Users().ByUserId(id).Patch(ctx, patch, nil); err != nil {
		t.Fatalf("patch: %v", err)
	}
	if st, _ := sim.User(seeded.TenantID, id); st.Properties["jobTitle"] != "Engineer" || st.DisplayName != "Alice" {
		t.Fatalf("after patch: %+v", st)
	}
	bodies := sim.Counters().Patches[id]
	if len(bodies) != 1 || len(bodies[0]) > 2 { // jobTitle (+ @odata.type)
		t.Fatalf("PATCH body not minimal: %v", bodies)
	}
	if err := client.Users().ByUserId(id).Delete(ctx, nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := client.Users().ByUserId(id).Get(ctx, nil); odataCode(err) != "Request_ResourceNotFound" {
		t.Fatalf("get after delete: want Request_ResourceNotFound, got %v", err)
	}
	c := sim.Counters()
	if c.Unauthenticated != 0 {
		t.Fatalf("%d Graph calls arrived without a token", c.Unauthenticated)
	}
	if c.TokensIssued != 1 {
		t.Fatalf("tokens issued = %d, want 1 (MSAL caches hour-long tokens)", c.TokensIssued)
	}
}

// TestSDKCertificateCredential proves the real certificate credential
// (PS256 assertion with x5t#S256) gets a token with the consented roles.
func TestSDKCertificateCredential(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	cred := certCredential(t, srv, seeded)
	client, _ := graphClient(t, srv, cred)
	if _, err := client.Users().Post(context.Background(), newUser("bob@"+seeded.Domain, "Bob"), nil); err != nil {
		t.Fatalf("create with certificate credential: %v", err)
	}
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: graphScopes})
	if err != nil {
		t.Fatal(err)
	}
	claims := jwtClaims(t, tok.Token)
	if claims["appidacr"] != "2" || claims["idtyp"] != "app" || claims["tid"] != seeded.TenantID {
		t.Fatalf("claims: %v", claims)
	}
}

// TestSDKBatch sends a $batch through msgraph-sdk-go-core.
func TestSDKBatch(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, adapter := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	batch := msgraphcore.NewBatchRequest(adapter)
	var ids []string
	for _, name := range []string{"carol", "dave", "erin"} {
		ri, err := client.Users().ToPostRequestInformation(ctx, newUser(name+"@"+seeded.Domain, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		item, err := batch.AddBatchRequestStep(*ri)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, *item.GetId())
	}
	// A duplicate of carol fails inside the batch with its own status.
	ri, _ := client.Users().ToPostRequestInformation(ctx, newUser("carol@"+seeded.Domain, "carol again"), nil)
	dup, _ := batch.AddBatchRequestStep(*ri)
	resp, err := batch.Send(ctx, adapter)
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	st := resp.GetStatusCodes()
	created := 0
	for _, id := range ids {
		if st[id] == 201 {
			created++
		}
	}
	if created != 3 || st[*dup.GetId()] != 400 {
		t.Fatalf("statuses %v", st)
	}
	if u, err := msgraphcore.GetBatchResponseById[models.Userable](resp, ids[0], models.CreateUserFromDiscriminatorValue); err != nil || u.GetId() == nil {
		t.Fatalf("decode step: %v", err)
	}
	if n := len(sim.Users(seeded.TenantID)); n != 3 {
		t.Fatalf("%d users, want 3", n)
	}
	if c := sim.Counters(); c.Created["carol@"+seeded.Domain] != 1 || c.Batches != 1 || c.BatchSteps != 4 {
		t.Fatalf("counters: created=%v batches=%d steps=%d", c.Created, c.Batches, c.BatchSteps)
	}
}

// TestSDKDelta reads users with delta, changes the directory, and follows
// the deltaLink: only changes come back, removals as @removed.
func TestSDKDelta(t *testing.T) {
	_, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	ctx := context.Background()
	client, _ := graphClient(t, srv, secretCredential(t, srv, seeded.TenantID, seeded.ClientID, seeded.ClientSecret))
	var ids []string
	for _, n := range []string{"u1", "u2", "u3"} {
		u, err := client.Users().Post(ctx, newUser(n+"@"+seeded.Domain, n), nil)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, *u.GetId())
	}
	first, err := client.Users().Delta().GetAsDeltaGetResponse(ctx, &users.DeltaRequestBuilderGetRequestConfiguration{
		QueryParameters: &users.DeltaRequestBuilderGetQueryParameters{Select: []string{"id", "displayName", "userPrincipalName"}},
	})
	if err != nil {
		t.Fatalf("delta: %v", err)
	}
	if len(first.GetValue()) != 3 || first.GetOdataDeltaLink() == nil {
		t.Fatalf("initial delta: %d users, deltaLink %v", len(first.GetValue()), first.GetOdataDeltaLink())
	}
	patch := models.NewUser()
	patch.SetDisplayName(ptr("U2 renamed"))
	if _, err := client.Users().ByUserId(ids[1]).Patch(ctx, patch, nil); err != nil {
		t.Fatal(err)
	}
	if err := client.Users().ByUserId(ids[2]).Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	next, err := client.Users().Delta().WithUrl(*first.GetOdataDeltaLink()).GetAsDeltaGetResponse(ctx, nil)
	if err != nil {
		t.Fatalf("delta link: %v", err)
	}
	if len(next.GetValue()) != 2 {
		t.Fatalf("changes: %d, want 2", len(next.GetValue()))
	}
	for _, u := range next.GetValue() {
		switch *u.GetId() {
		case ids[1]:
			if *u.GetDisplayName() != "U2 renamed" {
				t.Fatalf("renamed user: %v", *u.GetDisplayName())
			}
		case ids[2]:
			removed, ok := u.GetAdditionalData()["@removed"]
			if !ok || removed == nil {
				t.Fatalf("deleted user without @removed: %v", u.GetAdditionalData())
			}
		default:
			t.Fatalf("unexpected user %s in changes", *u.GetId())
		}
	}
}
