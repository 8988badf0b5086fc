package directory_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/entraprov/entraprov/internal/config"
	"github.com/entraprov/entraprov/internal/directory"
	"github.com/entraprov/entraprov/internal/graphsim"
)

// A job signs in with its secret, checks its permissions, then streams
// operations through the batch executor and reads one result per operation.
// Here the tenant is graphsim, trusted through the job's ca_file, exactly as
// a configuration file would point at it.
func ExampleClient_Execute() {
	sim := graphsim.New(graphsim.Options{})
	seeded := sim.SeedDefault()
	srv, err := graphsim.StartTLS(sim, "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "entraprov-example")
	defer os.RemoveAll(dir)
	secretFile := filepath.Join(dir, "secret")
	_ = os.WriteFile(secretFile, []byte(seeded.ClientSecret), 0o600)

	job := config.Job{
		TenantID: seeded.TenantID, Cloud: "public",
		AuthorityHost: srv.AuthorityHost, GraphURL: srv.GraphURL, CAFile: srv.CAFile,
		Auth:      config.Auth{Method: "secret", ClientID: seeded.ClientID, Secret: config.SecretRef{File: secretFile}},
		BatchSize: 20, MaxConcurrency: 4,
	}
	ctx := context.Background()
	c, err := directory.New(ctx, job, directory.Options{UserAgent: "entraprov/example"})
	if err != nil {
		panic(err)
	}
	roles, _, _, err := c.TokenRoles(ctx)
	fmt.Println("roles:", roles, err)

	ops := make(chan directory.Operation)
	results := make(chan directory.Result)
	go func() {
		defer close(ops)
		ops <- directory.Operation{Key: 1, Kind: directory.OpCreate, Password: "Example-Pw-1!",
			Fields: map[string]any{"userPrincipalName": "ada@" + seeded.Domain, "displayName": "Ada",
				"mailNickname": "ada", "accountEnabled": true}}
		ops <- directory.Operation{Key: 2, Kind: directory.OpCreate, Password: "Example-Pw-2!",
			Fields: map[string]any{"userPrincipalName": "bad@unverified.example", "displayName": "Bad",
				"mailNickname": "bad", "accountEnabled": true}}
	}()
	go func() {
		c.Execute(ctx, ops, results)
		close(results)
	}()
	byKey := map[int64]directory.Result{}
	for r := range results {
		byKey[r.Key] = r
	}
	fmt.Println(byKey[1].Key, byKey[1].Outcome, byKey[1].HTTPStatus)
	fmt.Println(byKey[2].Key, byKey[2].Outcome, byKey[2].HTTPStatus)
	// Output:
	// roles: [User.ReadWrite.All GroupMember.ReadWrite.All User-LifeCycleInfo.ReadWrite.All] <nil>
	// 1 succeeded 201
	// 2 failed 400
}
