package status

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Result is what became of a deployment.
type Result string

const (
	Succeeded   Result = "succeeded"
	Failed      Result = "failed"
	Rejected    Result = "rejected"
	Resurrected Result = "resurrected"
	Deleted     Result = "deleted"
	Drifted     Result = "drifted"
)

// Outcome is one deployment's result, as written to deployments/<name>.yml.
type Outcome struct {
	Deployment   string     `yaml:"deployment"`
	SourceCommit string     `yaml:"source_commit"`
	Result       Result     `yaml:"result"`
	Task         string     `yaml:"task,omitempty"`
	Policy       *Policy    `yaml:"policy,omitempty"`
	StartedAt    time.Time  `yaml:"started_at"`
	FinishedAt   time.Time  `yaml:"finished_at"`
	Error        *Failure   `yaml:"error,omitempty"`
	Instances    []Instance `yaml:"instances"`
	// Changes counts what the task did, for the commit message.
	Changes Changes `yaml:"-"`
	// Summary, when set, replaces the commit title's text after "<deployment>: ".
	Summary string `yaml:"-"`
}

// Policy holds the policy's messages for this revision.
type Policy struct {
	Deny []string `yaml:"deny,omitempty"`
	Warn []string `yaml:"warn,omitempty"`
}

// Failure says what went wrong, and where when an instance was at fault.
type Failure struct {
	Message  string `yaml:"message"`
	Instance string `yaml:"instance,omitempty"` // group/index
	Process  string `yaml:"process,omitempty"`
	LogTail  string `yaml:"log_tail,omitempty"`
}

// Instance is one instance's observed state after the task.
type Instance struct {
	Name  string   `yaml:"name"` // group/index
	ID    string   `yaml:"id"`
	AZ    string   `yaml:"az,omitempty"`
	State string   `yaml:"state"`
	VMCID string   `yaml:"vm_cid,omitempty"`
	IPs   []string `yaml:"ips,omitempty"`
}

// Changes counts instance changes for the commit title.
type Changes struct {
	Created, Updated, Recreated, Deleted int
}

func (c Changes) String() string {
	var parts []string
	for _, p := range []struct {
		n    int
		verb string
	}{{c.Updated, "updated"}, {c.Created, "created"}, {c.Recreated, "recreated"}, {c.Deleted, "deleted"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.verb))
		}
	}
	if len(parts) == 0 {
		return "no changes"
	}
	return strings.Join(parts, ", ")
}

// validate rejects outcomes that would make a misleading or unsafe file name.
func (o Outcome) validate() error {
	switch {
	case o.Deployment == "":
		return fmt.Errorf("outcome has no deployment name")
	case strings.ContainsAny(o.Deployment, "/\\\x00\n") || o.Deployment == "." || o.Deployment == "..":
		return fmt.Errorf("deployment name %q cannot be a file name", o.Deployment)
	case o.Result == "":
		return fmt.Errorf("outcome for %s has no result", o.Deployment)
	}
	return nil
}

// Path is where the outcome lives on the status branch.
func (o Outcome) Path() string { return "deployments/" + o.Deployment + ".yml" }

// redacted returns a copy of o with redact applied to every free-text field.
func (o Outcome) redacted(redact func(string) string) Outcome {
	if redact == nil {
		return o
	}
	if o.Policy != nil {
		p := Policy{}
		for _, m := range o.Policy.Deny {
			p.Deny = append(p.Deny, redact(m))
		}
		for _, m := range o.Policy.Warn {
			p.Warn = append(p.Warn, redact(m))
		}
		o.Policy = &p
	}
	if o.Error != nil {
		e := *o.Error
		e.Message, e.LogTail = redact(e.Message), redact(e.LogTail)
		o.Error = &e
	}
	o.Summary = redact(o.Summary)
	return o
}

// Render is the content of deployments/<name>.yml.
func Render(o Outcome) ([]byte, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.StartedAt, o.FinishedAt = o.StartedAt.UTC(), o.FinishedAt.UTC()
	if o.Instances == nil {
		o.Instances = []Instance{}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(o); err != nil {
		return nil, fmt.Errorf("render status of %s: %w", o.Deployment, err)
	}
	return b.Bytes(), nil
}

// Message is the commit message: a title such as
// "demo: deployed 4f2a9c1 (2 updated, 1 created) in 14s", details for failures and
// rejections, then the Bosun-Source, Bosun-Result and Bosun-Task trailers.
func Message(o Outcome) string {
	short := o.SourceCommit
	if len(short) > 7 {
		short = short[:7]
	}
	took := ""
	if d := o.FinishedAt.Sub(o.StartedAt); !o.StartedAt.IsZero() && !o.FinishedAt.IsZero() && d >= 0 {
		if d >= time.Second {
			d = d.Round(time.Second)
		} else {
			d = d.Round(time.Millisecond)
		}
		took = " in " + d.String()
	}
	var title string
	switch {
	case o.Summary != "":
		title = o.Summary
	case o.Result == Succeeded:
		title = fmt.Sprintf("deployed %s (%s)%s", short, o.Changes, took)
	case o.Result == Failed:
		title = fmt.Sprintf("failed to deploy %s%s", short, took)
		if o.Error != nil && o.Error.Instance != "" {
			title += ": " + o.Error.Instance
			if o.Error.Process != "" {
				title += " (" + o.Error.Process + ")"
			}
		}
	case o.Result == Rejected:
		title = "rejected " + short
		if o.Policy != nil && len(o.Policy.Deny) > 0 {
			title += fmt.Sprintf(" by policy (%d denied)", len(o.Policy.Deny))
		}
	case o.Result == Deleted:
		title = fmt.Sprintf("deleted (source %s)%s", short, took)
	case o.Result == Resurrected:
		title = fmt.Sprintf("resurrected (%s)%s", o.Changes, took)
	default:
		title = fmt.Sprintf("%s %s%s", o.Result, short, took)
	}
	var b strings.Builder
	b.WriteString(o.Deployment + ": " + oneLine(title) + "\n")
	var body []string
	if o.Error != nil && o.Error.Message != "" {
		body = append(body, o.Error.Message)
	}
	if o.Policy != nil {
		for _, m := range o.Policy.Deny {
			body = append(body, "deny: "+m)
		}
		for _, m := range o.Policy.Warn {
			body = append(body, "warn: "+m)
		}
	}
	if len(body) > 0 {
		// Details get their own paragraph so the last one holds only trailers.
		b.WriteString("\n" + strings.Join(body, "\n") + "\n")
	}
	b.WriteString("\n")
	if o.SourceCommit != "" {
		b.WriteString("Bosun-Source: " + oneLine(o.SourceCommit) + "\n")
	}
	b.WriteString("Bosun-Result: " + oneLine(string(o.Result)) + "\n")
	if o.Task != "" {
		b.WriteString("Bosun-Task: " + oneLine(o.Task) + "\n")
	}
	return b.String()
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}
