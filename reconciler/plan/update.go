package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// maxInstances bounds one group so a typo cannot make the planner allocate millions of
// instances; BOSH has no limit, and no real instance group comes near it.
const maxInstances = 100_000

// amount is a parsed canaries or max_in_flight value: a count, or a percentage of the
// instances that change.
type amount struct {
	n       int
	percent bool
}

func parseAmount(s string) (amount, error) {
	t := strings.TrimSpace(s)
	pct := strings.HasSuffix(t, "%")
	n, err := strconv.Atoi(strings.TrimSuffix(t, "%"))
	if err != nil || n < 0 || (pct && n > 100) {
		return amount{}, fmt.Errorf("%q is neither a count nor a percentage", s)
	}
	return amount{n: n, percent: pct}, nil
}

// of resolves the amount against size changing instances as BOSH does: a percentage is
// floor(n*size/100), and the result never exceeds size.
func (a amount) of(size int) int {
	n := a.n
	if a.percent {
		n = a.n * size / 100
	}
	return min(n, size)
}

func parseWatchTime(s string) (WatchTime, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil || a < 0 {
		return WatchTime{}, fmt.Errorf("%q is neither milliseconds nor a min-max range", s)
	}
	if !isRange {
		return WatchTime{a, a}, nil
	}
	b, err := strconv.Atoi(strings.TrimSpace(hi))
	if err != nil || b < a {
		return WatchTime{}, fmt.Errorf("%q is neither milliseconds nor a min-max range (min must not exceed max)", s)
	}
	return WatchTime{a, b}, nil
}

// strategy parses a group's update block.
type strategy struct {
	Strategy
	canaries, maxInFlight amount
}

func parseStrategy(u UpdateBlock) (strategy, error) {
	s := strategy{Strategy: Strategy{Canaries: u.Canaries, MaxInFlight: u.MaxInFlight, Serial: u.Serial, VMStrategy: u.VMStrategy}}
	var err error
	if s.canaries, err = parseAmount(u.Canaries); err != nil {
		return s, fmt.Errorf("update.canaries: %w", err)
	}
	if s.maxInFlight, err = parseAmount(u.MaxInFlight); err != nil {
		return s, fmt.Errorf("update.max_in_flight: %w", err)
	}
	if s.CanaryWatchTime, err = parseWatchTime(u.CanaryWatchTime); err != nil {
		return s, fmt.Errorf("update.canary_watch_time: %w", err)
	}
	if s.UpdateWatchTime, err = parseWatchTime(u.UpdateWatchTime); err != nil {
		return s, fmt.Errorf("update.update_watch_time: %w", err)
	}
	switch u.InitialDeployAZUpdateStrategy {
	case "", "serial", "parallel":
	default:
		return s, fmt.Errorf("update.initial_deploy_az_update_strategy: %q is not serial or parallel", u.InitialDeployAZUpdateStrategy)
	}
	switch u.VMStrategy {
	case "":
		s.VMStrategy = DeleteCreate
	case DeleteCreate, CreateSwapDelete:
	default:
		return s, fmt.Errorf("update.vm_strategy: %q is not %s or %s", u.VMStrategy, DeleteCreate, CreateSwapDelete)
	}
	return s, nil
}

// batches orders a group's work as BOSH's instance group updater does: obsolete instances
// are deleted first, max_in_flight at a time; then changed instances one AZ after another
// in order of first appearance, canaries taken from the first AZ only, and each AZ's
// amounts computed from the number of its instances that change. When AZs go in parallel
// the whole group counts as one AZ.
func (s strategy) batches(ins []InstancePlan) []Batch {
	var out []Batch
	var deletes []string
	var azOrder []string
	byAZ := map[string][]string{}
	for _, in := range ins {
		if s.AZsInParallel {
			in.AZ = ""
		}
		switch in.Action {
		case Delete:
			deletes = append(deletes, in.ID)
		case Keep:
			if in.Disk == DiskKeep {
				continue
			}
			fallthrough
		default:
			if _, seen := byAZ[in.AZ]; !seen {
				azOrder = append(azOrder, in.AZ)
			}
			byAZ[in.AZ] = append(byAZ[in.AZ], in.ID)
		}
	}
	out = chunk(out, BatchDelete, "", deletes, max(1, s.maxInFlight.of(len(deletes))))
	for i, az := range azOrder {
		ids := byAZ[az]
		mif := max(1, s.maxInFlight.of(len(ids)))
		if i == 0 {
			c := s.canaries.of(len(ids))
			out = chunk(out, BatchCanary, az, ids[:c], mif)
			ids = ids[c:]
		}
		out = chunk(out, BatchUpdate, az, ids, mif)
	}
	return out
}

func chunk(out []Batch, kind BatchKind, az string, ids []string, size int) []Batch {
	for len(ids) > 0 {
		n := min(size, len(ids))
		out = append(out, Batch{Kind: kind, AZ: az, Instances: ids[:n:n]})
		ids = ids[n:]
	}
	return out
}

// stages orders groups as BOSH's multi instance group updater does: removed groups first,
// then groups in manifest order where a run of consecutive serial: false groups goes at
// once and every serial group goes alone.
func stages(groups []GroupPlan) [][]string {
	var out [][]string
	var removed []string
	for _, g := range groups {
		if g.Removed {
			removed = append(removed, g.Name)
		}
	}
	if len(removed) > 0 {
		out = append(out, removed)
	}
	parallel := false
	for _, g := range groups {
		if g.Removed {
			continue
		}
		if !g.Strategy.Serial && parallel {
			out[len(out)-1] = append(out[len(out)-1], g.Name)
			continue
		}
		out = append(out, []string{g.Name})
		parallel = !g.Strategy.Serial
	}
	return out
}
