// Package protocol is the wire contract between director and agent: subjects, envelopes,
// methods, long-running tasks, error codes, the apply spec, heartbeats, alerts and the
// protocol version, plus the director-side client. It is BOSH's protocol (bosh-spec §8)
// so that the director can drive a stock BOSH agent too. It imports only the standard
// library.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Version is the protocol number sent in every request's "protocol" field.
//
// History:
//   - 3: BOSH's current protocol; list_disk is asynchronous. Bosun agents speak only 3.
const Version = 3

// Subject helpers (bosh-spec §8.1).
func AgentSubject(agentID string) string     { return "agent." + agentID }
func HeartbeatSubject(agentID string) string { return "hm.agent.heartbeat." + agentID }
func AlertSubject(agentID string) string     { return "hm.agent.alert." + agentID }
func ShutdownSubject(agentID string) string  { return "hm.agent.shutdown." + agentID }

// ReplySubject is where an agent answers one request of one director process.
func ReplySubject(directorUUID, agentID, requestID string) string {
	return "director." + directorUUID + "." + agentID + "." + requestID
}

// Method names (bosh-spec §8.4).
const (
	MethodPing                        = "ping"
	MethodInfo                        = "info"
	MethodGetState                    = "get_state"
	MethodGetTask                     = "get_task"
	MethodCancelTask                  = "cancel_task"
	MethodPrepare                     = "prepare"
	MethodApply                       = "apply"
	MethodStart                       = "start"
	MethodStop                        = "stop"
	MethodDrain                       = "drain"
	MethodRunScript                   = "run_script"
	MethodCompilePackage              = "compile_package"
	MethodCompilePackageWithSignedURL = "compile_package_with_signed_url"
	MethodFetchLogs                   = "fetch_logs"
	MethodFetchLogsWithSignedURL      = "fetch_logs_with_signed_url"
	MethodMountDisk                   = "mount_disk"
	MethodUnmountDisk                 = "unmount_disk"
	MethodMigrateDisk                 = "migrate_disk"
	MethodListDisk                    = "list_disk"
	MethodAddPersistentDisk           = "add_persistent_disk"
	MethodRemovePersistentDisk        = "remove_persistent_disk"
	MethodUpdateSettings              = "update_settings"
)

// Request is the envelope the director publishes to agent.<id>.
type Request struct {
	Protocol  int               `json:"protocol"`
	Method    string            `json:"method"`
	Arguments []json.RawMessage `json:"arguments"`
	ReplyTo   string            `json:"reply_to"`
}

// Response is the agent's answer: exactly one of Value and Exception is set.
type Response struct {
	Value     json.RawMessage `json:"value,omitempty"`
	Exception *Exception      `json:"exception,omitempty"`
}

// Exception is an error reported by the agent. Code is a Bosun extension a stock BOSH
// agent never sends; the director falls back to the message.
type Exception struct {
	Message      string `json:"message"`
	Code         Code   `json:"code,omitempty"`
	Backtrace    string `json:"backtrace,omitempty"`
	BlobstoreID  string `json:"blobstore_id,omitempty"`
	CompileLogID string `json:"compile_log_id,omitempty"`
}

// Code classifies agent errors so the director can act without parsing messages.
// Codes are stable: never renumber or reuse one.
type Code string

const (
	CodeUnknownMethod Code = "unknown_method" // BOSH: "unknown message <method>"
	CodeBadArguments  Code = "bad_arguments"  // arguments did not decode
	CodeBlobFetch     Code = "blob_fetch"     // a blob could not be downloaded or failed verification
	CodeBlobUpload    Code = "blob_upload"    // a result could not be uploaded
	CodeCompileFailed Code = "compile_failed" // the packaging script failed; message holds the log tail
	CodeJobFailed     Code = "job_failed"     // a job's process or script failed; message holds the log tail
	CodeTaskNotFound  Code = "task_not_found" // get_task/cancel_task of an unknown id
	CodeTaskCancelled Code = "task_cancelled" // cancel_task stopped it
	CodeDisk          Code = "disk"           // mount/unmount/list failed
	CodeInternal      Code = "internal"       // anything else
)

// Error is an agent-side error carrying a Code; the agent turns it into an Exception,
// the client turns an Exception back into an *Error.
type Error struct {
	Code    Code
	Message string
	// Op names the call on the director side ("apply on agent x"); empty on the agent.
	Op string
}

func (e *Error) Error() string {
	if e.Op != "" {
		return e.Op + ": " + e.Message
	}
	return e.Message
}

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of err, CodeInternal when it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	return CodeInternal
}

// UnknownMethod is the exception a BOSH agent raises for a method it does not know.
func UnknownMethod(method string) *Error {
	return Errorf(CodeUnknownMethod, "unknown message %s", method)
}

// IsUnknownMethod reports whether err says the agent does not implement the method,
// from either a Bosun code or a stock agent's message.
func IsUnknownMethod(err error) bool {
	var e *Error
	return errors.As(err, &e) && (e.Code == CodeUnknownMethod || strings.HasPrefix(e.Message, "unknown message "))
}

// Task states of a long-running action (bosh-spec §8.3).
const (
	TaskRunning = "running"
	TaskDone    = "done"
	TaskFailed  = "failed"
)

// TaskHandle is the value of an asynchronous action's first reply and of get_task while
// the task runs.
type TaskHandle struct {
	AgentTaskID string `json:"agent_task_id"`
	State       string `json:"state"`
}

// BlobRef names a blob by digest: BlobstoreID is the hex sha256, SHA1 the BOSH
// multi-digest "sha256:<hex>". SignedURL, when set, is where to GET it.
type BlobRef struct {
	BlobstoreID      string            `json:"blobstore_id"`
	SHA1             string            `json:"sha1"`
	SignedURL        string            `json:"signed_url,omitempty"`
	BlobstoreHeaders map[string]string `json:"blobstore_headers,omitempty"`
}

// JobTemplate is one job of the instance in the apply spec.
type JobTemplate struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	BlobRef
	Logs []string `json:"logs,omitempty"`
}

// JobSpec is the apply spec's "job".
type JobSpec struct {
	Name      string        `json:"name"`
	Template  string        `json:"template,omitempty"`
	Version   string        `json:"version,omitempty"`
	Templates []JobTemplate `json:"templates"`
}

// PackageSpec is one compiled package in the apply spec.
type PackageSpec struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	BlobRef
}

// Network is one of the instance's networks.
type Network struct {
	Type            string         `json:"type,omitempty"`
	IP              string         `json:"ip,omitempty"`
	Netmask         string         `json:"netmask,omitempty"`
	Gateway         string         `json:"gateway,omitempty"`
	DNS             []string       `json:"dns,omitempty"`
	Default         []string       `json:"default,omitempty"`
	CloudProperties map[string]any `json:"cloud_properties,omitempty"`
}

// ApplySpec is what the director asks an instance to be (bosh-spec §8.5).
type ApplySpec struct {
	Deployment               string                 `json:"deployment"`
	Name                     string                 `json:"name"`
	Index                    int                    `json:"index"`
	ID                       string                 `json:"id"`
	AZ                       string                 `json:"az,omitempty"`
	Job                      JobSpec                `json:"job"`
	Packages                 map[string]PackageSpec `json:"packages"`
	Networks                 map[string]Network     `json:"networks"`
	ConfigurationHash        string                 `json:"configuration_hash,omitempty"`
	PersistentDisk           int                    `json:"persistent_disk"`
	TemplateHashes           map[string]string      `json:"template_hashes,omitempty"`
	RenderedTemplatesArchive *BlobRef               `json:"rendered_templates_archive,omitempty"`
	DNSDomainName            string                 `json:"dns_domain_name,omitempty"`
	PropertiesDigest         string                 `json:"properties_digest,omitempty"`
}

// Job states (get_state's job_state and heartbeats).
const (
	JobRunning  = "running"
	JobFailing  = "failing"
	JobStarting = "starting"
	JobStopped  = "stopped"
	JobUnknown  = "unknown"
)

// Process is one supervised process in get_state.
type Process struct {
	Name   string   `json:"name"`
	State  string   `json:"state"`
	Uptime *Uptime  `json:"uptime,omitempty"`
	Mem    *ProcMem `json:"mem,omitempty"`
	CPU    *ProcCPU `json:"cpu,omitempty"`
	// Bosun extensions: the job the process belongs to, its pid, and for a failing
	// process why it failed and the end of its stderr/stdout.
	Job     string `json:"job,omitempty"`
	PID     int    `json:"pid,omitempty"`
	LogTail string `json:"log_tail,omitempty"`
}

type Uptime struct {
	Secs int64 `json:"secs"`
}
type ProcMem struct {
	KB      int64   `json:"kb"`
	Percent float64 `json:"percent"`
}
type ProcCPU struct {
	Total float64 `json:"total"`
}

// State is get_state's value: the applied spec plus the live state.
type State struct {
	ApplySpec
	AgentID   string    `json:"agent_id"`
	JobState  string    `json:"job_state"`
	Processes []Process `json:"processes"`
	VM        VMInfo    `json:"vm"`
	Vitals    *Vitals   `json:"vitals,omitempty"`
}

type VMInfo struct {
	Name string `json:"name"`
}

// Vitals follow BOSH's shape, numbers as strings.
type Vitals struct {
	CPU    CPUVitals            `json:"cpu"`
	Load   []string             `json:"load"`
	Mem    MemVitals            `json:"mem"`
	Swap   MemVitals            `json:"swap"`
	Uptime Uptime               `json:"uptime"`
	Disk   map[string]DiskVital `json:"disk"`
}
type CPUVitals struct {
	Sys  string `json:"sys"`
	User string `json:"user"`
	Wait string `json:"wait"`
}
type MemVitals struct {
	KB      string `json:"kb"`
	Percent string `json:"percent"`
}
type DiskVital struct {
	Percent      string `json:"percent"`
	InodePercent string `json:"inode_percent"`
}

// Heartbeat is published to hm.agent.heartbeat.<id> (bosh-spec §8.6).
type Heartbeat struct {
	Deployment        string  `json:"deployment"`
	Job               *string `json:"job"`
	Index             *int    `json:"index"`
	JobState          string  `json:"job_state"`
	NodeID            string  `json:"node_id"`
	NumberOfProcesses int     `json:"number_of_processes"`
	Vitals            Vitals  `json:"vitals"`
}

// Alert severities (bosh-spec §8.7).
const (
	SeverityAlert    = 1
	SeverityCritical = 2
	SeverityError    = 3
	SeverityWarning  = 4
)

// Alert is published to hm.agent.alert.<id>.
type Alert struct {
	ID        string `json:"id"`
	Severity  int    `json:"severity"`
	Title     string `json:"title"`
	Summary   string `json:"summary"`
	CreatedAt int64  `json:"created_at"`
}

// CompileDependency is one entry of compile_package's deps.
type CompileDependency struct {
	Name                string            `json:"name"`
	Version             string            `json:"version"`
	SHA1                string            `json:"sha1"`
	BlobstoreID         string            `json:"blobstore_id"`
	PackageGetSignedURL string            `json:"package_get_signed_url,omitempty"`
	BlobstoreHeaders    map[string]string `json:"blobstore_headers,omitempty"`
}

// CompileWithSignedURL is compile_package_with_signed_url's single argument.
type CompileWithSignedURL struct {
	PackageGetSignedURL string                       `json:"package_get_signed_url"`
	UploadSignedURL     string                       `json:"upload_signed_url"`
	Digest              string                       `json:"digest"`
	Name                string                       `json:"name"`
	Version             string                       `json:"version"`
	Deps                map[string]CompileDependency `json:"deps"`
	BlobstoreHeaders    map[string]string            `json:"blobstore_headers,omitempty"`
}

// CompileResult is compile_package's value.
type CompileResult struct {
	Result BlobResult `json:"result"`
}

// BlobResult names an uploaded blob.
type BlobResult struct {
	BlobstoreID string `json:"blobstore_id"`
	SHA1        string `json:"sha1"`
}

// FetchLogsWithSignedURL is fetch_logs_with_signed_url's single argument.
type FetchLogsWithSignedURL struct {
	SignedURL        string            `json:"signed_url"`
	LogType          string            `json:"log_type"`
	Filters          []string          `json:"filters"`
	BlobstoreHeaders map[string]string `json:"blobstore_headers,omitempty"`
}

// Info is info's value.
type Info struct {
	APIVersion int `json:"api_version"`
}
