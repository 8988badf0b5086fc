// Package graphsim emulates the two Microsoft services entraprov talks to:
// the Microsoft identity platform token endpoint (client credentials with a
// secret or a certificate assertion, OIDC discovery) and the part of
// Microsoft Graph v1.0 a user-provisioning worker uses (users, manager,
// group members, deleted items, /users/delta, JSON $batch), including the
// identity service's throttling, latency, eventual consistency and
// injected faults.
//
// It exists so the worker can be tested and benchmarked with the real
// azidentity and msgraph-sdk-go clients over TLS, on a machine that cannot
// reach Entra ID. It follows ../shared/graph-facts.md (sources in README.md,
// FACTS); where the real service and the emulator could differ, the fact
// sheet wins.
//
// graphsim owns the emulator only: it must not import any other entraprov
// package, and nothing in production code may import it.
//
// A test:
//
//	sim, srv, seeded := graphsim.NewTestServer(t, graphsim.Options{})
//	cred, _ := azidentity.NewClientSecretCredential(seeded.TenantID, seeded.ClientID, seeded.ClientSecret,
//		&azidentity.ClientSecretCredentialOptions{DisableInstanceDiscovery: true, ClientOptions: azcore.ClientOptions{
//			Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: srv.AuthorityHost}, Transport: srv.Client()}})
//	auth, _ := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(cred,
//		[]string{"https://graph.microsoft.com/.default"}, []string{"127.0.0.1"})
//	// ... adapter.SetBaseUrl(srv.GraphURL) before msgraphsdk.NewGraphServiceClient(adapter)
//	// ... run the worker, then assert on sim.Users(seeded.TenantID) and sim.Counters().
//
// Every Graph call, direct or a $batch step, goes through the same
// pipeline: route → throttle (token buckets per app+tenant, app, tenant) →
// fault → permission (roles in the token) → handler. State lives in memory
// with one lock per tenant.
package graphsim
