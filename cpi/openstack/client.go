package openstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/internal/wait"
)

// CPI is the OpenStack CPI. It is safe for concurrent use.
type CPI struct {
	cfg  Config
	log  *slog.Logger
	http *http.Client

	mu  sync.Mutex
	api *services // nil until the first call that needs the cloud
}

// services are the authenticated service clients.
type services struct {
	compute, volume, image, network *gophercloud.ServiceClient
}

var (
	_ cpi.CPI                    = (*CPI)(nil)
	_ cpi.Namer                  = (*CPI)(nil)
	_ cpi.Rebooter               = (*CPI)(nil)
	_ cpi.VMMetadataSetter       = (*CPI)(nil)
	_ cpi.DiskMetadataSetter     = (*CPI)(nil)
	_ cpi.DiskLister             = (*CPI)(nil)
	_ cpi.Snapshotter            = (*CPI)(nil)
	_ cpi.DiskResizer            = (*CPI)(nil)
	_ cpi.VMLister               = (*CPI)(nil)
	_ cpi.VMPropertiesCalculator = (*CPI)(nil)
)

// New checks cfg and returns the CPI. It makes no request: Keystone is asked on the
// first call that needs the cloud, so `info` is free.
func New(cfg Config, log *slog.Logger) (*CPI, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = "openstack"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if v := cfg.ConnectionOptions.SSLVerifyPeer; v != nil && !*v {
		tlsCfg.InsecureSkipVerify = true
	}
	if pem := cfg.ConnectionOptions.CACert; pem != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM([]byte(pem)) {
			return nil, errors.New("openstack config: connection_options.ca_cert holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: wait.Seconds(cfg.ConnectionOptions.ConnectTimeout, 30), KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: wait.Seconds(cfg.ConnectionOptions.ReadTimeout, 120),
		MaxIdleConnsPerHost:   8,
	}
	return &CPI{cfg: cfg, log: log.With("cpi", cfg.Name), http: &http.Client{Transport: tr}}, nil
}

// Name implements cpi.Namer.
func (c *CPI) Name() string { return c.cfg.Name }

// Info implements cpi.CPI.
func (c *CPI) Info(ctx context.Context) (cpi.Info, error) {
	return cpi.Info{APIVersion: cpi.APIVersion, StemcellFormats: []string{"openstack-raw", "openstack-qcow2", "openstack-light"}}, nil
}

// services authenticates once and builds the service clients; a failure is not
// remembered, so the next call tries again.
func (c *CPI) services(ctx context.Context) (*services, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		return c.api, nil
	}
	p, err := openstack.NewClient(c.cfg.AuthURL)
	if err != nil {
		return nil, fmt.Errorf("keystone: auth_url: %w", err)
	}
	p.HTTPClient = *c.http
	p.UserAgent.Prepend("bosun-openstack-cpi")
	p.MaxBackoffRetries = uint(c.maxAttempts())
	p.RetryBackoffFunc = c.backoff
	p.RetryFunc = c.retry
	opts := gophercloud.AuthOptions{IdentityEndpoint: c.cfg.AuthURL, AllowReauth: true}
	if c.cfg.ApplicationCredentialID != "" {
		opts.ApplicationCredentialID = c.cfg.ApplicationCredentialID
		opts.ApplicationCredentialSecret = c.cfg.ApplicationCredentialSecret
	} else {
		domain := c.cfg.Domain
		if domain == "" {
			domain = "Default"
		}
		opts.Username, opts.Password, opts.DomainName = c.cfg.Username, c.cfg.APIKey, domain
		opts.Scope = &gophercloud.AuthScope{ProjectName: c.cfg.project(), DomainName: domain}
	}
	if err := openstack.Authenticate(ctx, p, opts); err != nil {
		return nil, apiErr("keystone authenticate", err)
	}
	eo := gophercloud.EndpointOpts{Region: c.cfg.Region, Availability: c.availability()}
	var s services
	for _, b := range []struct {
		kind string
		to   **gophercloud.ServiceClient
		new  func(*gophercloud.ProviderClient, gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error)
	}{
		{"compute (nova)", &s.compute, openstack.NewComputeV2},
		{"block-storage v3 (cinder)", &s.volume, openstack.NewBlockStorageV3},
		{"image (glance)", &s.image, openstack.NewImageV2},
		{"network (neutron)", &s.network, openstack.NewNetworkV2},
	} {
		sc, err := b.new(p, eo)
		if err != nil {
			var nf *gophercloud.ErrEndpointNotFound
			if errors.As(err, &nf) {
				return nil, fmt.Errorf("keystone catalog has no %s endpoint of interface %s in region %q", b.kind, eo.Availability, c.cfg.Region)
			}
			return nil, apiErr("find "+b.kind+" endpoint", err)
		}
		*b.to = sc
	}
	c.api = &s
	return c.api, nil
}

func (c *CPI) availability() gophercloud.Availability {
	switch strings.TrimSuffix(c.cfg.EndpointType, "URL") {
	case "internal":
		return gophercloud.AvailabilityInternal
	case "admin":
		return gophercloud.AvailabilityAdmin
	}
	return gophercloud.AvailabilityPublic
}

func (c *CPI) maxAttempts() int {
	if c.cfg.RetryConfig.MaxAttempts > 0 {
		return c.cfg.RetryConfig.MaxAttempts
	}
	return 10
}

// delay is the pause before retry n (from 1): Retry-After when the cloud said,
// capped, else exponential backoff with jitter.
func (c *CPI) delay(h http.Header, n uint) time.Duration {
	if d, ok := retryAfter(h); ok {
		return min(d, wait.Seconds(c.cfg.RetryConfig.MaxRetryAfter, 60))
	}
	return wait.Backoff(int(n), wait.Seconds(c.cfg.RetryConfig.SleepDuration, 1), 5, 0)
}

// retryAfter reads Retry-After in either of its forms (seconds or an HTTP date).
func retryAfter(h http.Header) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 {
		return time.Duration(s * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// backoff answers 429 (and 498): wait as told, then gophercloud repeats the request;
// it stops after MaxBackoffRetries.
func (c *CPI) backoff(ctx context.Context, e *gophercloud.ErrUnexpectedResponseCode, _ error, n uint) error {
	// A streamed upload cannot be replayed: its body is already consumed.
	if e.Method == http.MethodPut && strings.HasSuffix(e.URL, "/file") {
		return *e
	}
	d := c.delay(e.ResponseHeader, n)
	c.log.Warn("rate limited; retrying", "call", e.Method+" "+urlPath(e.URL), "status", e.Actual,
		"request_id", requestID(e.ResponseHeader), "attempt", n, "after", d)
	if err := wait.Sleep(ctx, d); err != nil {
		return *e
	}
	return nil
}

// retry decides on every other failure. Only requests that are safe to repeat are
// repeated after a 5xx or a transport error: a POST that timed out may have created
// something. A 503 says the request was not handled, so it is repeated for any method
// but a streamed upload.
func (c *CPI) retry(ctx context.Context, method, u string, opts *gophercloud.RequestOpts, err error, n uint) error {
	if n > uint(c.maxAttempts()) || ctx.Err() != nil || opts.RawBody != nil {
		return err
	}
	idempotent := method == http.MethodGet || method == http.MethodHead || method == http.MethodDelete
	var h http.Header
	var code gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.As(err, &code):
		if code.Actual < 500 || (!idempotent && code.Actual != http.StatusServiceUnavailable) {
			return err
		}
		h = code.ResponseHeader
	case idempotent && isTransport(err):
	default:
		return err
	}
	d := c.delay(h, n)
	c.log.Warn("request failed; retrying", "call", method+" "+urlPath(u), "err", describe(err), "attempt", n, "after", d)
	if serr := wait.Sleep(ctx, d); serr != nil {
		return err
	}
	return nil
}

// isTransport reports a failure to get any response: http.Client wraps those, and
// only those, in *url.Error.
func isTransport(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue)
}

// waitFor polls check every wait_resource_poll_interval until it reports done or an
// error, or state_timeout passes. check says the state it saw, for the timeout error.
func (c *CPI) waitFor(ctx context.Context, what string, check func(context.Context) (done bool, state string, err error)) error {
	return wait.For(ctx, c.cfg.stateTimeout(), c.cfg.pollInterval(), what, check)
}
