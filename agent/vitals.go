package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/bosun-gitops/bosun/agent/protocol"
)

// vitalsSampler reads BOSH's vitals from /proc; CPU percentages are over the time since
// the previous sample.
type vitalsSampler struct {
	mu   sync.Mutex
	prev []uint64
}

func newVitalsSampler() *vitalsSampler {
	v := &vitalsSampler{}
	v.prev = cpuTimes()
	return v
}

func (v *vitalsSampler) sample(p paths) protocol.Vitals {
	out := protocol.Vitals{Disk: map[string]protocol.DiskVital{}}
	now := cpuTimes()
	v.mu.Lock()
	prev := v.prev
	v.prev = now
	v.mu.Unlock()
	// /proc/stat cpu: user nice system idle iowait irq softirq steal
	if len(now) >= 5 && len(prev) >= 5 {
		var total uint64
		for i := range now {
			if i < len(prev) {
				total += now[i] - prev[i]
			}
		}
		pct := func(i int) string {
			if total == 0 {
				return "0.0"
			}
			return fmt.Sprintf("%.1f", 100*float64(now[i]-prev[i])/float64(total))
		}
		out.CPU = protocol.CPUVitals{User: pct(0), Sys: pct(2), Wait: pct(4)}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			out.Load = f[:3]
		}
	}
	mem := meminfo()
	if total := mem["MemTotal"]; total > 0 {
		used := total - mem["MemAvailable"]
		out.Mem = protocol.MemVitals{KB: strconv.FormatUint(used, 10), Percent: fmt.Sprintf("%.0f", 100*float64(used)/float64(total))}
	}
	if total := mem["SwapTotal"]; total > 0 {
		used := total - mem["SwapFree"]
		out.Swap = protocol.MemVitals{KB: strconv.FormatUint(used, 10), Percent: fmt.Sprintf("%.0f", 100*float64(used)/float64(total))}
	} else {
		out.Swap = protocol.MemVitals{KB: "0", Percent: "0"}
	}
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			secs, _ := strconv.ParseFloat(f[0], 64)
			out.Uptime.Secs = int64(secs)
		}
	}
	out.Disk["system"] = diskVital("/")
	out.Disk["ephemeral"] = diskVital(p.dataDir(""))
	if _, err := os.Stat(p.store()); err == nil {
		out.Disk["persistent"] = diskVital(p.store())
	}
	return out
}

func cpuTimes() []uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 2 || f[0] != "cpu" {
		return nil
	}
	out := make([]uint64, 0, len(f)-1)
	for _, s := range f[1:] {
		n, _ := strconv.ParseUint(s, 10, 64)
		out = append(out, n)
	}
	return out
}

func meminfo() map[string]uint64 {
	out := map[string]uint64{}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		out[k] = n
	}
	return out
}

func diskVital(path string) protocol.DiskVital {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil || st.Blocks == 0 {
		return protocol.DiskVital{Percent: "0", InodePercent: "0"}
	}
	used := 100 * float64(st.Blocks-st.Bavail) / float64(st.Blocks)
	ipct := 0.0
	if st.Files > 0 {
		ipct = 100 * float64(st.Files-st.Ffree) / float64(st.Files)
	}
	return protocol.DiskVital{Percent: fmt.Sprintf("%.0f", used), InodePercent: fmt.Sprintf("%.0f", ipct)}
}

// procUsage reads a process's resident memory and its average CPU share since it started.
func procUsage(pid int) (*protocol.ProcMem, *protocol.ProcCPU) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, nil
	}
	// Fields after the parenthesised command name, which may itself contain spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, nil
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 22 {
		return nil, nil
	}
	// f[0] is field 3 (state): utime=14, stime=15, starttime=22, rss=24.
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	start, _ := strconv.ParseFloat(f[19], 64)
	rss, _ := strconv.ParseInt(f[21], 10, 64)
	const hz = 100 // USER_HZ on Linux
	mem := &protocol.ProcMem{KB: rss * int64(os.Getpagesize()) / 1024}
	if total := meminfo()["MemTotal"]; total > 0 {
		mem.Percent = float64(mem.KB) / float64(total) * 100
	}
	cpu := &protocol.ProcCPU{}
	if ub, err := os.ReadFile("/proc/uptime"); err == nil {
		up, _ := strconv.ParseFloat(strings.Fields(string(ub))[0], 64)
		if elapsed := up - start/hz; elapsed > 0 {
			cpu.Total = (utime + stime) / hz / elapsed * 100
		}
	}
	return mem, cpu
}
