package graphsim_test

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/entraprov/entraprov/internal/graphsim"
)

// Serve the emulator over TLS, get an app token with a client secret and
// create a user — the bare protocol, without the SDKs.
func Example() {
	sim := graphsim.New(graphsim.Options{})
	seeded := sim.SeedDefault()
	srv, err := graphsim.StartTLS(sim, "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	hc := srv.Client()

	resp, _ := hc.PostForm(srv.AuthorityHost+seeded.TenantID+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {seeded.ClientID},
		"client_secret": {seeded.ClientSecret}, "scope": {"https://graph.microsoft.com/.default"},
	})
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	decode(resp, &tok)
	fmt.Println("token:", resp.StatusCode)

	body := `{"accountEnabled":true,"displayName":"Ada","mailNickname":"ada","userPrincipalName":"ada@contoso.example",
	  "passwordProfile":{"password":"Xy7!longenough","forceChangePasswordNextSignIn":true}}`
	req := newRequest("POST", srv.GraphURL+"/users", strings.NewReader(body), tok.AccessToken)
	resp, _ = hc.Do(req)
	resp.Body.Close()
	fmt.Println("create:", resp.StatusCode)
	fmt.Println("users:", len(sim.Users(seeded.TenantID)), "writes:", sim.Counters().Writes)
	// Output:
	// token: 200
	// create: 201
	// users: 1 writes: 1
}
