package cpi

import (
	"errors"
	"strings"
)

// Kind is a BOSH CPI error type; on the wire it is "Bosh::Clouds::" + Kind.
type Kind string

// The kinds BOSH's director recognises (bosh-spec §7.1, cpi.md §6).
const (
	CpiError         Kind = "CpiError"       // malformed request or response
	NotImplemented   Kind = "NotImplemented" // the CPI lacks the method; callers skip it
	NotSupported     Kind = "NotSupported"   // resize_disk/update_disk: caller copies instead
	CloudError       Kind = "CloudError"     // anything else
	VMNotFound       Kind = "VMNotFound"
	NetworkNotFound  Kind = "NetworkNotFound"
	VMCreationFailed Kind = "VMCreationFailed"
	DiskNotAttached  Kind = "DiskNotAttached"
	DiskNotFound     Kind = "DiskNotFound"
	NoDiskSpace      Kind = "NoDiskSpace"
)

// WirePrefix prefixes a Kind in a CPI response's error.type.
const WirePrefix = "Bosh::Clouds::"

// Retriable reports whether BOSH honours ok_to_retry for this kind; for every other
// kind a retry is never offered.
func (k Kind) Retriable() bool {
	switch k {
	case VMCreationFailed, DiskNotAttached, DiskNotFound, NoDiskSpace:
		return true
	}
	return false
}

// Error is the one error type CPIs return.
type Error struct {
	CPI    string // the CPI's configured name, e.g. "local" or "openstack-z1"
	Method string // BOSH method name, e.g. "create_vm"
	// Instance is the director's instance the call was made for (see WithInstance).
	Instance string
	// Subject is what the call acted on: the agent id on create_vm, else the cid.
	Subject string
	Kind    Kind
	// OkToRetry says repeating the call is safe and may succeed: the cloud has not
	// acted, or has cleaned up after itself.
	OkToRetry bool
	Msg       string
	Err       error

	sentinel bool // a kind-only value for errors.Is
}

// Message is the human part: Msg and the cause.
func (e *Error) Message() string {
	switch {
	case e.Err == nil:
		return e.Msg
	case e.Msg == "":
		return e.Err.Error()
	}
	return e.Msg + ": " + e.Err.Error()
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("cpi")
	if e.CPI != "" {
		b.WriteString(" " + e.CPI)
	}
	if e.Method != "" {
		b.WriteString(" " + e.Method)
	}
	if e.Instance != "" {
		b.WriteString(" for " + e.Instance)
	}
	if e.Subject != "" {
		b.WriteString(" (" + e.Subject + ")")
	}
	b.WriteString(": ")
	b.WriteString(e.Message())
	b.WriteString(" [" + string(e.Kind))
	if e.OkToRetry {
		b.WriteString(", safe to retry]")
	} else {
		b.WriteString(", not safe to retry]")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches a kind sentinel (ErrVMNotFound, …): errors.Is(err, cpi.ErrVMNotFound).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.sentinel && t.Kind == e.Kind
}

func sentinel(k Kind) *Error {
	return &Error{Kind: k, Msg: "any " + string(k) + " error", sentinel: true}
}

// Kind sentinels for errors.Is.
var (
	ErrCpiError         error = sentinel(CpiError)
	ErrNotImplemented   error = sentinel(NotImplemented)
	ErrNotSupported     error = sentinel(NotSupported)
	ErrCloudError       error = sentinel(CloudError)
	ErrVMNotFound       error = sentinel(VMNotFound)
	ErrNetworkNotFound  error = sentinel(NetworkNotFound)
	ErrVMCreationFailed error = sentinel(VMCreationFailed)
	ErrDiskNotAttached  error = sentinel(DiskNotAttached)
	ErrDiskNotFound     error = sentinel(DiskNotFound)
	ErrNoDiskSpace      error = sentinel(NoDiskSpace)
)

// KindOf returns the kind of the first *Error in err's chain, or CloudError for any
// other non-nil error (as BOSH treats an error without a type).
func KindOf(err error) Kind {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return CloudError
}

// OkToRetry reports whether err says a retry is safe. Errors that are not *Error never
// are: nobody vouched that the cloud did not act.
func OkToRetry(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.OkToRetry
}

// ParseKind maps a wire error type ("Bosh::Clouds::VMNotFound") to a Kind; unknown
// types are CloudError, and ok reports whether the type was known.
func ParseKind(wire string) (k Kind, ok bool) {
	name, found := strings.CutPrefix(wire, WirePrefix)
	if !found {
		return CloudError, false
	}
	switch k := Kind(name); k {
	case CpiError, NotImplemented, NotSupported, CloudError, VMNotFound, NetworkNotFound,
		VMCreationFailed, DiskNotAttached, DiskNotFound, NoDiskSpace:
		return k, true
	}
	return CloudError, false
}
