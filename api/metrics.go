package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/state"
)

// MetricsWriter writes Prometheus' text exposition format (version 0.0.4). Every family
// is announced once with its HELP and TYPE; series names get the bosun_ prefix.
type MetricsWriter struct {
	w    *bufio.Writer
	seen map[string]bool
}

// Labels are one series' labels.
type Labels map[string]string

func (m *MetricsWriter) family(name, typ, help string) string {
	name = "bosun_" + name
	if !m.seen[name] {
		m.seen[name] = true
		fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, typ)
	}
	return name
}

// Gauge writes one sample of a gauge.
func (m *MetricsWriter) Gauge(name, help string, l Labels, v float64) {
	m.sample(m.family(name, "gauge", help), l, v)
}

// Counter writes one sample of a counter; name should end in _total.
func (m *MetricsWriter) Counter(name, help string, l Labels, v float64) {
	m.sample(m.family(name, "counter", help), l, v)
}

// Histogram writes a histogram from cumulative bucket counts (upper bound → count of
// observations ≤ it), the sum and the count of observations.
func (m *MetricsWriter) Histogram(name, help string, l Labels, buckets map[float64]uint64, sum float64, count uint64) {
	n := m.family(name, "histogram", help)
	bounds := make([]float64, 0, len(buckets))
	for b := range buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	for _, b := range bounds {
		bl := Labels{"le": strconv.FormatFloat(b, 'g', -1, 64)}
		for k, v := range l {
			bl[k] = v
		}
		m.sample(n+"_bucket", bl, float64(buckets[b]))
	}
	inf := Labels{"le": "+Inf"}
	for k, v := range l {
		inf[k] = v
	}
	m.sample(n+"_bucket", inf, float64(count))
	m.sample(n+"_sum", l, sum)
	m.sample(n+"_count", l, float64(count))
}

func (m *MetricsWriter) sample(name string, l Labels, v float64) {
	m.w.WriteString(name)
	if len(l) > 0 {
		m.w.WriteByte('{')
		for k, key := range sortedKeys(l) {
			if k > 0 {
				m.w.WriteByte(',')
			}
			m.w.WriteString(key)
			m.w.WriteString(`="`)
			m.w.WriteString(labelEscaper.Replace(strings.ToValidUTF8(l[key], "\uFFFD")))
			m.w.WriteByte('"')
		}
		m.w.WriteByte('}')
	}
	m.w.WriteByte(' ')
	m.w.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	m.w.WriteByte('\n')
}

// labelEscaper applies the only three escapes the text format knows in label values.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// NewMetricsWriter writes to w; call Flush when done.
func NewMetricsWriter(w io.Writer) *MetricsWriter {
	return &MetricsWriter{w: bufio.NewWriter(w), seen: map[string]bool{}}
}

// Flush writes out what is buffered.
func (m *MetricsWriter) Flush() error { return m.w.Flush() }

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	m := NewMetricsWriter(w)
	m.Gauge("build_info", "The director's version.", Labels{"version": s.o.Version}, 1)
	up := 1.0
	if c, ok := s.o.Store.(Counter); ok {
		tasks, err := c.TaskCounts(ctx)
		if err == nil {
			for _, st := range []string{state.TaskQueued, state.TaskProcessing, state.TaskCancelling, state.TaskDone, state.TaskError, state.TaskCancelled, state.TaskTimeout} {
				m.Gauge("tasks", "Tasks by state.", Labels{"state": st}, float64(tasks[st]))
			}
			m.Gauge("task_queue_depth", "Tasks queued and not yet claimed by a worker.", nil, float64(tasks[state.TaskQueued]))
		}
		revs, err2 := c.RevisionCounts(ctx)
		if err2 == nil {
			for _, v := range []string{state.RevisionAccepted, state.RevisionRejected, state.RevisionFailed} {
				m.Gauge("revisions", "Judged source commits by verdict.", Labels{"verdict": v}, float64(revs[v]))
			}
		}
		if err != nil || err2 != nil {
			up = 0
		}
	}
	if ss, err := s.o.Store.Suspensions(ctx); err == nil {
		m.Gauge("deployments_suspended", "Deployments whose reconciliation an operator suspended.", nil, float64(len(ss)))
	} else {
		up = 0
	}
	m.Gauge("store_up", "Whether the last scrape could read the director's database.", nil, up)
	for _, collect := range s.o.Metrics {
		collect(ctx, m)
	}
	s.statsMu.Lock()
	keys := make([][2]string, 0, len(s.stats))
	for k := range s.stats {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		return keys[a][0] < keys[b][0] || keys[a][0] == keys[b][0] && keys[a][1] < keys[b][1]
	})
	for _, k := range keys {
		m.Counter("api_requests_total", "API requests by route and status code.", Labels{"route": k[0], "code": k[1]}, float64(s.stats[k]))
	}
	s.statsMu.Unlock()
	_ = m.Flush()
}
