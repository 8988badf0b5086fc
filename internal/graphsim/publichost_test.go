package graphsim_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	msgraphsdk "github.com/microsoftgraph/msgraph-sdk-go"
	msgraphcore "github.com/microsoftgraph/msgraph-sdk-go-core"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// TestPublicHostsViaDialer: with no URL overrides at all (public cloud
// authority, default Graph base URL, instance discovery on), a transport
// that dials login.microsoftonline.com and graph.microsoft.com to the
// emulator is enough: its certificate names both hosts.
func TestPublicHostsViaDialer(t *testing.T) {
	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: srv.CertPool()},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, srv.Addr())
		},
		ForceAttemptHTTP2: true,
	}
	cred, err := azidentity.NewClientSecretCredential(seeded.TenantID, seeded.ClientID, seeded.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: azcore.ClientOptions{Transport: &http.Client{Transport: tr}, Retry: policy.RetryOptions{MaxRetries: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	auth, err := kauth.NewAzureIdentityAuthenticationProvider(cred)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: khttp.NewCustomTransportWithParentTransport(tr, msgraphcore.GetDefaultMiddlewaresWithOptions(&msgraphcore.GraphClientOptions{})...)}
	adapter, err := msgraphsdk.NewGraphRequestAdapterWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, nil, nil, hc)
	if err != nil {
		t.Fatal(err)
	}
	client := msgraphsdk.NewGraphServiceClient(adapter)
	if _, err := client.Users().Post(context.Background(), newUser("pub@"+seeded.Domain, "Pub"), nil); err != nil {
		t.Fatalf("create via public host names: %v", err)
	}
	if _, ok := sim.User(seeded.TenantID, "pub@"+seeded.Domain); !ok {
		t.Fatal("user not created")
	}
	c := sim.Counters()
	t.Logf("requests: %v", c.Requests)
	// MSAL asks instance discovery first when it is not disabled.
	if c.Requests["GET /common/discovery/instance 200"] != 1 || c.Unauthenticated != 0 || c.TokensIssued != 1 {
		t.Fatalf("unauthenticated %d tokens %d", c.Unauthenticated, c.TokensIssued)
	}
}
