package plan

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// String renders the plan as WriteText does.
func (p Plan) String() string {
	var b strings.Builder
	p.WriteText(&b)
	return b.String()
}

// WriteText writes the plan as a readable diff, as bosh deploy previews one: per instance
// group, "+" for instances created, "-" deleted, "~" recreated or updated, each with why.
// Unchanged instances are only counted.
func (p Plan) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if p.Empty() {
		fmt.Fprintf(bw, "Deployment %s: no changes\n", p.Deployment)
		return bw.Flush()
	}
	fmt.Fprintf(bw, "Deployment %s\n", p.Deployment)
	for _, g := range p.Groups {
		writeGroup(bw, g)
	}
	if len(p.Stages) > 0 {
		stages := make([]string, len(p.Stages))
		for i, s := range p.Stages {
			stages[i] = "[" + strings.Join(s, ", ") + "]"
		}
		fmt.Fprintf(bw, "\nOrder: %s\n", strings.Join(stages, " then "))
	}
	return bw.Flush()
}

func writeGroup(w *bufio.Writer, g GroupPlan) {
	changed, unchanged := 0, 0
	for _, in := range g.Instances {
		if in.Action == Keep && in.Disk == DiskKeep {
			unchanged++
		} else {
			changed++
		}
	}
	if changed == 0 {
		return
	}
	fmt.Fprintf(w, "\n  %s", g.Name)
	switch {
	case g.Removed:
		fmt.Fprint(w, " (removed)")
	default:
		mode := "serial"
		if !g.Strategy.Serial {
			mode = "parallel"
		}
		fmt.Fprintf(w, " (canaries %s, max_in_flight %s, %s", g.Strategy.Canaries, g.Strategy.MaxInFlight, mode)
		if g.Lifecycle == Errand {
			fmt.Fprint(w, ", errand")
		}
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
	for _, in := range g.Instances {
		if in.Action == Keep && in.Disk == DiskKeep {
			continue
		}
		mark := "~"
		switch in.Action {
		case Create:
			mark = "+"
		case Delete:
			mark = "-"
		}
		fmt.Fprintf(w, "  %s %s (%s)", mark, in.Name(), in.ID)
		if in.AZ != "" {
			fmt.Fprintf(w, " az=%s", in.AZ)
		}
		for _, a := range in.IPs {
			if a.IP != "" {
				fmt.Fprintf(w, " %s=%s", a.Network, a.IP)
			}
		}
		if in.Bootstrap {
			fmt.Fprint(w, " bootstrap")
		}
		fmt.Fprintf(w, ": %s", in.Action)
		if in.Action == Recreate && in.VMStrategy == CreateSwapDelete {
			fmt.Fprint(w, ", new VM first") // the old one runs until the new one is up
		}
		if in.Action == Create && in.Disk == DiskCreate {
			fmt.Fprint(w, " with persistent disk")
		}
		if len(in.Reasons) > 0 {
			rs := make([]string, len(in.Reasons))
			for i, r := range in.Reasons {
				rs[i] = r.String()
			}
			fmt.Fprintf(w, " (%s)", strings.Join(rs, "; "))
		}
		fmt.Fprintln(w)
	}
	if unchanged > 0 {
		fmt.Fprintf(w, "    %d unchanged\n", unchanged)
	}
}
