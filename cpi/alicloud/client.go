package alicloud

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/responses"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/ecs"
	"github.com/aliyun/alibaba-cloud-sdk-go/services/slb"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/internal/wait"
)

// CPI is the Alibaba Cloud CPI. It is safe for concurrent use.
type CPI struct {
	cfg  Config
	log  *slog.Logger
	base http.RoundTripper
	cred auth.Credential
	ecs  endpoint
	vpc  endpoint
	slb  endpoint
	nlb  endpoint
	oss  endpoint // heavy stemcells' temporary buckets

	// maxPut bounds one PutObject (OSS's 5 GiB; lowered by tests) and clock stamps
	// OSS requests (nil: the time now).
	maxPut int64
	clock  func() time.Time
}

type endpoint struct {
	product      string // "ecs", "vpc", "slb", "nlb": how errors name the API
	scheme, host string
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

// New checks cfg and returns the CPI. It makes no request, so `info` is free.
func New(cfg Config, log *slog.Logger) (*CPI, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Name == "" {
		cfg.Name = "alicloud"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CPI{cfg: cfg, log: log.With("cpi", cfg.Name)}
	c.ecs = endpoint{product: "ecs", scheme: "HTTPS", host: ecs.GetEndpointMap()[cfg.Region]}
	if c.ecs.host == "" {
		c.ecs.host = "ecs." + cfg.Region + ".aliyuncs.com"
	}
	c.vpc = endpoint{product: "vpc", scheme: "HTTPS", host: "vpc." + cfg.Region + ".aliyuncs.com"}
	c.slb = endpoint{product: "slb", scheme: "HTTPS", host: slb.GetEndpointMap()[cfg.Region]}
	if c.slb.host == "" {
		c.slb.host = "slb." + cfg.Region + ".aliyuncs.com"
	}
	c.nlb = endpoint{product: "nlb", scheme: "HTTPS", host: "nlb." + cfg.Region + ".aliyuncs.com"}
	c.oss, c.maxPut = ossEndpoint(cfg), maxPutObject
	for _, e := range []struct {
		s  string
		to *endpoint
	}{{cfg.ECSEndpoint, &c.ecs}, {cfg.VPCEndpoint, &c.vpc}, {cfg.SLBEndpoint, &c.slb}, {cfg.NLBEndpoint, &c.nlb}} {
		if scheme, host, _ := parseEndpoint(e.s); host != "" {
			e.to.scheme, e.to.host = scheme, host
		}
	}
	if cfg.SecurityToken != "" {
		c.cred = &credentials.StsTokenCredential{AccessKeyId: cfg.AccessKeyID, AccessKeySecret: cfg.AccessKeySecret, AccessKeyStsToken: cfg.SecurityToken}
	} else {
		c.cred = &credentials.AccessKeyCredential{AccessKeyId: cfg.AccessKeyID, AccessKeySecret: cfg.AccessKeySecret}
	}
	c.base = &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: wait.Seconds(cfg.ConnectionOptions.ConnectTimeout, 10), KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: wait.Seconds(cfg.ConnectionOptions.ReadTimeout, 60),
		MaxIdleConnsPerHost:   8,
	}
	return c, nil
}

// Name implements cpi.Namer.
func (c *CPI) Name() string { return c.cfg.Name }

// Info implements cpi.CPI.
func (c *CPI) Info(ctx context.Context) (cpi.Info, error) {
	return cpi.Info{APIVersion: cpi.APIVersion, StemcellFormats: []string{"alicloud-light", "alicloud-raw"}}, nil
}

// ctxTransport binds the SDK's requests to the caller's context: the V1 SDK takes
// none, so without this a cancelled deploy would wait for every request to time out.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
}

func (t ctxTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	// Either the SDK's own timeout (on r's context) or the caller's context ends
	// the request.
	rctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(t.ctx, cancel)
	resp, err := t.base.RoundTrip(r.WithContext(rctx))
	if err != nil {
		stop()
		cancel()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, done: func() { stop(); cancel() }}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	done func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

// call is one API request's options.
type call struct {
	ep endpoint
	// idempotent marks a request that may be re-sent after a 5xx or a lost answer:
	// a Describe, or a create carrying a ClientToken.
	idempotent bool
}

// do sends req with the SDK and decodes into resp, retrying what is safe to retry:
// throttling and "service unavailable" (the cloud did not act) for any request,
// other 5xx and transport failures only when the request is idempotent. Each
// attempt gets a fresh SDK client: the V1 client mutates itself per request, so one
// shared between goroutines races.
func (c *CPI) do(ctx context.Context, cl call, req requests.AcsRequest, resp responses.AcsResponse) error {
	op := cl.ep.product + " " + req.GetActionName()
	conf := sdk.NewConfig()
	conf.AutoRetry, conf.MaxRetryTime, conf.Scheme = false, 0, cl.ep.scheme
	conf.Transport = ctxTransport{ctx: ctx, base: c.base}
	client, err := sdk.NewClientWithOptions(c.cfg.Region, conf, c.cred)
	if err != nil {
		return &apiError{Op: op, Message: "SDK client: " + describe(err)}
	}
	client.SetReadTimeout(wait.Seconds(c.cfg.ConnectionOptions.ReadTimeout, 60))
	client.SetConnectTimeout(wait.Seconds(c.cfg.ConnectionOptions.ConnectTimeout, 10))
	req.SetDomain(cl.ep.host)
	req.SetScheme(cl.ep.scheme)
	return c.retrying(ctx, op, func(e *apiError) bool { return retriable(e, cl.idempotent) }, func() error {
		if err := client.DoAction(req, resp); err != nil {
			return apiErr(op, err)
		}
		return nil
	})
}

// retrying sends until an answer is no error, or an error again does not allow
// resending, or retry_config.max_attempts pass.
func (c *CPI) retrying(ctx context.Context, op string, again func(*apiError) bool, send func() error) error {
	for attempt := 1; ; attempt++ {
		err := send()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return &apiError{Op: op, Message: "cancelled: " + context.Cause(ctx).Error(), err: ctx.Err()}
		}
		var e *apiError
		if !errors.As(err, &e) || attempt > c.cfg.maxAttempts() || !again(e) {
			return err
		}
		d := c.delay(attempt)
		c.log.Warn("request failed; retrying", "call", op, "code", e.Code, "status", e.Status, "request_id", e.RequestID,
			"attempt", attempt, "after", d)
		if wait.Sleep(ctx, d) != nil {
			return e
		}
	}
}

// retriable decides whether e may be answered by sending the request again.
func retriable(e *apiError, idempotent bool) bool {
	switch {
	case strings.HasPrefix(e.Code, "Throttling"), e.Status == http.StatusTooManyRequests:
		return true // refused before acting
	case e.Code == "ServiceUnavailable", e.Status == http.StatusServiceUnavailable, e.Code == "SystemBusy":
		return true // SystemBusy: SLB's "try again later"
	case e.Code == "OperationConflict", e.Code == "LastTokenProcessing", e.Code == "InvalidOperation.Conflict", e.Code == "Conflict.Lock":
		// Another operation on the resource is in flight; it refused this one.
		// Conflict.Lock is NLB's, when VMs join one server group at once.
		return true
	case e.Status >= 500:
		return idempotent
	case e.Status == 0 && e.transport:
		return idempotent
	}
	return false
}

// delay is the pause before retry n (from 1): exponential backoff with jitter,
// capped at retry_config.max_sleep.
func (c *CPI) delay(n int) time.Duration {
	return wait.Backoff(n, wait.Seconds(c.cfg.RetryConfig.SleepDuration, 1), 10, wait.Seconds(c.cfg.RetryConfig.MaxSleep, 30))
}

// apiError is what an Alibaba Cloud API answered: which call, what status and code,
// the request id to quote to Alibaba's support, and the cloud's message. It holds
// nothing from the request, whose URL carries the signed parameters and user data.
type apiError struct {
	Op        string // "ecs CreateInstance"
	Status    int    // 0 when no answer came
	Code      string
	RequestID string
	Message   string
	transport bool // no answer: the request may or may not have been acted on
	err       error
}

func (e *apiError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&b, " answered %d", e.Status)
		if e.Code != "" {
			b.WriteString(" " + e.Code)
		}
	} else {
		b.WriteString(" failed")
	}
	if e.RequestID != "" {
		b.WriteString(" (request " + e.RequestID + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

func (e *apiError) Unwrap() error { return e.err }

func apiErr(op string, err error) *apiError {
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		msg := se.Message()
		// A signature error quotes the server's string to sign: every parameter,
		// user data with the agent's credentials included.
		if i := strings.Index(msg, "string to sign is:"); i >= 0 {
			msg = msg[:i] + "string to sign is: (withheld)"
		}
		return &apiError{Op: op, Status: se.HttpStatus(), Code: se.ErrorCode(), RequestID: se.RequestId(), Message: clip(msg)}
	}
	e := &apiError{Op: op, Message: describe(err)}
	var ue *url.Error
	var ce *sdkerrors.ClientError
	if errors.As(err, &ue) || (errors.As(err, &ce) && ce.OriginError() != nil) {
		e.transport = true
	}
	return e
}

// describe is err's text without the request URL, which the SDK signs and fills
// with every parameter (user data included).
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if errors.Is(ue.Err, context.DeadlineExceeded) || ue.Timeout() {
			return "timed out"
		}
		return strings.ToUpper(ue.Op) + ": " + describe(ue.Err)
	}
	var ce *sdkerrors.ClientError
	if errors.As(err, &ce) {
		if o := ce.OriginError(); o != nil {
			return ce.ErrorCode() + ": " + describe(o)
		}
		return clip(ce.ErrorCode() + ": " + ce.Message())
	}
	return clip(err.Error())
}

func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// codeIs reports whether err is an API error whose code is one of codes or, for a
// code ending in ".", starts with it.
func codeIs(err error, codes ...string) bool {
	var e *apiError
	if !errors.As(err, &e) {
		return false
	}
	for _, c := range codes {
		if e.Code == c || (strings.HasSuffix(c, ".") && strings.HasPrefix(e.Code, c)) {
			return true
		}
	}
	return false
}

func (c *CPI) errf(ctx context.Context, method, subject string, kind cpi.Kind, retry bool, cause error, format string, a ...any) error {
	return &cpi.Error{CPI: c.cfg.Name, Method: method, Instance: cpi.InstanceFrom(ctx), Subject: subject,
		Kind: kind, OkToRetry: retry, Msg: fmt.Sprintf(format, a...), Err: cause}
}

// waitFor polls check every wait_resource_poll_interval until it reports done or an
// error, or state_timeout passes. check says the state it saw, for the timeout error.
func (c *CPI) waitFor(ctx context.Context, what string, check func(context.Context) (done bool, state string, err error)) error {
	return wait.For(ctx, c.cfg.stateTimeout(), c.cfg.pollInterval(), what, check)
}
