package directory

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/entraprov/entraprov/internal/config"
)

// endpoints are where a job signs in and which Graph it talks to.
type endpoints struct {
	cloud        cloud.Configuration // authority host for azidentity
	graphURL     string              // https://graph.microsoft.com/v1.0
	graphHost    string              // host without port, for kiota's valid hosts
	scope        string              // https://graph.microsoft.com/.default
	custom       bool                // overridden authority: no instance discovery
	authorityURL string              // https://login.microsoftonline.com/ (trailing slash)
}

// clouds maps config.Job.Cloud to azcore's cloud and the Graph root.
var clouds = map[string]struct {
	cfg   cloud.Configuration
	graph string
}{
	"":       {cloud.AzurePublic, "https://graph.microsoft.com"},
	"public": {cloud.AzurePublic, "https://graph.microsoft.com"},
	"usgov":  {cloud.AzureGovernment, "https://graph.microsoft.us"},
	"china":  {cloud.AzureChina, "https://microsoftgraph.chinacloudapi.cn"},
}

func resolveEndpoints(job config.Job) (endpoints, error) {
	c, ok := clouds[job.Cloud]
	if !ok {
		return endpoints{}, fmt.Errorf("cloud %q: want public, usgov or china", job.Cloud)
	}
	ep := endpoints{cloud: c.cfg, graphURL: c.graph + "/v1.0"}
	if job.AuthorityHost != "" {
		ep.cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: job.AuthorityHost, Services: c.cfg.Services}
		ep.custom = true
	}
	if job.GraphURL != "" {
		ep.graphURL = strings.TrimRight(job.GraphURL, "/")
		ep.custom = true
	}
	ep.authorityURL = ep.cloud.ActiveDirectoryAuthorityHost
	if !strings.HasSuffix(ep.authorityURL, "/") {
		ep.authorityURL += "/"
	}
	u, err := url.Parse(ep.graphURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return endpoints{}, fmt.Errorf("graph_url %q is not an absolute URL", ep.graphURL)
	}
	ep.graphHost = u.Hostname()
	// App-only scopes are always {resource}/.default; the resource of a
	// custom Graph URL is still the cloud's Graph (an emulator or proxy
	// must accept the real audience).
	ep.scope = c.graph + "/.default"
	return ep, nil
}

// ConsentURL is the admin-consent page of the job's cloud for its app.
func ConsentURL(job config.Job) string {
	ep, err := resolveEndpoints(job)
	if err != nil {
		ep.authorityURL = cloud.AzurePublic.ActiveDirectoryAuthorityHost
	}
	return consentURL(ep.authorityURL, job.TenantID, job.Auth.ClientID)
}

func consentURL(authority, tenant, clientID string) string {
	return fmt.Sprintf("%s%s/adminconsent?client_id=%s", authority, url.PathEscape(tenant), url.QueryEscape(clientID))
}

// NewCredential builds the azidentity credential a job's auth section asks
// for. httpClient (may be nil) is the transport for token requests, e.g. one
// trusting the emulator's CA; when it is nil, the process's shared transport
// trusting job.CAFile (ProcessTransports). The credential, and with it the
// token cache, is the job's own.
// Secrets are read here, from their references, and kept only inside the
// credential.
func NewCredential(job config.Job, httpClient *http.Client) (azcore.TokenCredential, error) {
	ctx := context.Background()
	ep, err := resolveEndpoints(job)
	if err != nil {
		return nil, err
	}
	if httpClient == nil {
		if httpClient, err = transportClient(processTransports, job.CAFile, nil); err != nil {
			return nil, err
		}
	}
	// azcore's retry policy bounds the token path's Retry-After: one past
	// MaxRetryDelay (default 60 s, 25 s for IMDS) ends the retries with an
	// error instead of waiting, so a hostile authority cannot park a run.
	co := azcore.ClientOptions{Cloud: ep.cloud, Transport: httpClient}
	a := job.Auth
	tenant := job.TenantID
	switch a.Method {
	case "secret":
		secret, err := a.Secret.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("auth.client_secret: %w", err)
		}
		return azidentity.NewClientSecretCredential(tenant, a.ClientID, secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: ep.custom})
	case "certificate":
		certs, key, err := loadCertificate(ctx, a)
		if err != nil {
			return nil, err
		}
		return azidentity.NewClientCertificateCredential(tenant, a.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: ep.custom, SendCertificateChain: a.SendChain})
	case "managed_identity":
		o := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: co}
		if a.ManagedIdentityClientID != "" {
			o.ID = azidentity.ClientID(a.ManagedIdentityClientID)
		}
		return azidentity.NewManagedIdentityCredential(o)
	case "workload_identity":
		return azidentity.NewWorkloadIdentityCredential(&azidentity.WorkloadIdentityCredentialOptions{
			ClientOptions: co, ClientID: a.ClientID, TenantID: tenant,
			TokenFilePath: a.FederatedTokenFile, DisableInstanceDiscovery: ep.custom,
		})
	default:
		return nil, fmt.Errorf("auth.method %q: want certificate, secret, managed_identity or workload_identity", a.Method)
	}
}

// loadCertificate reads the certificate and key (PEM, PEM + separate key,
// PEM from a systemd credential, or PFX) and parses them with azidentity.
func loadCertificate(ctx context.Context, a config.Auth) ([]*x509.Certificate, any, error) {
	var data, password []byte
	var where string
	switch {
	case a.PFXFile != "":
		where = "auth.pfx_file"
		b, err := os.ReadFile(a.PFXFile)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", where, err)
		}
		data = b
		if !a.PFXPassword.IsZero() {
			p, err := a.PFXPassword.ReadBytes(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("auth.pfx_password: %w", err)
			}
			password = []byte(strings.TrimRight(string(p), "\r\n"))
		}
	default:
		where = "auth.certificate_file"
		if a.CertificateFile != "" {
			b, err := os.ReadFile(a.CertificateFile)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %w", where, err)
			}
			data = append(data, b...)
		}
		switch {
		case a.KeyFile != "":
			b, err := os.ReadFile(a.KeyFile)
			if err != nil {
				return nil, nil, fmt.Errorf("auth.key_file: %w", err)
			}
			data = append(append(data, '\n'), b...)
		case a.KeyCredential != "":
			b, err := (config.SecretRef{Credential: a.KeyCredential}).ReadBytes(ctx)
			if err != nil {
				return nil, nil, fmt.Errorf("auth.key_credential: %w", err)
			}
			data = append(append(data, '\n'), b...)
		}
	}
	certs, key, err := azidentity.ParseCertificates(data, password)
	if err != nil {
		// ParseCertificates reads PFX only with 3DES/RC2 encryption (OpenSSL 3
		// needs -legacy); say so, the library's message does not.
		return nil, nil, fmt.Errorf("%s: %w (a PFX must use legacy 3DES encryption: openssl pkcs12 -export -legacy; or use PEM)", where, err)
	}
	return certs, key, nil
}

// tokenRequest is the one token request shape the worker makes.
func tokenRequest(scope string) policy.TokenRequestOptions {
	return policy.TokenRequestOptions{Scopes: []string{scope}}
}
