package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bosun-gitops/bosun/api"
)

func init() {
	register(&command{name: "deployments", aliases: []string{"ds"}, summary: "list deployments: releases, stemcells, instances, revision, suspension, teams", run: runDeployments})
	register(&command{name: "instances", aliases: []string{"is"}, summary: "list instances of one deployment (-d) or all; --ps shows each process, --details ids and disks", run: runInstances})
	register(&command{name: "vms", summary: "list VMs of one deployment (-d) or all; --vitals asks each agent for load, CPU, memory and disk", run: runVMs})
	register(&command{name: "disks", summary: "list persistent disks of one deployment (-d) or all", run: runDisks})
}

func runDeployments(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "deployments", "")
	rf := addRemoteFlags(fs, false)
	cl, err := remoteVerb(fs, rf, "deployments", args)
	if err != nil {
		return err
	}
	ds, err := cl.Deployments(ctx)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, ds)
	}
	rows := make([][]string, 0, len(ds))
	for _, d := range ds {
		susp := "-"
		if d.Suspended != nil {
			susp = "by " + d.Suspended.User + " since " + when(d.Suspended.Since)
			if d.Suspended.Reason != "" {
				susp += ": " + d.Suspended.Reason
			}
		}
		rows = append(rows, []string{d.Name, dash(strings.Join(d.Releases, ", ")), dash(strings.Join(d.Stemcells, ", ")),
			strconv.Itoa(d.Instances), dash(short(d.Revision)), susp, dash(strings.Join(d.Teams, ", "))})
	}
	if err := printTable(c.stdout, []string{"Name", "Release(s)", "Stemcell(s)", "Instances", "Revision", "Suspended", "Team(s)"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d deployments\n", len(ds))
	return nil
}

// deploymentsToShow is -d's deployment, or every deployment the token sees.
func deploymentsToShow(ctx context.Context, cl *api.Client, rf *remoteFlags, pos []string, verb string) ([]string, error) {
	d, rest, err := deploymentArg(rf, pos, verb, false)
	if err != nil {
		return nil, err
	}
	if err := noArgs(verb, rest); err != nil {
		return nil, err
	}
	if d != "" {
		return []string{d}, nil
	}
	ds, err := cl.Deployments(ctx)
	if err != nil {
		return nil, remoteError(err)
	}
	names := make([]string, len(ds))
	for k, d := range ds {
		names[k] = d.Name
	}
	return names, nil
}

func runInstances(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "instances", "[-d DEPLOYMENT]")
	rf := addRemoteFlags(fs, true)
	ps := fs.Bool("ps", false, "ask each agent for its processes and their states")
	details := fs.Bool("details", false, "show index, bootstrap, VM, agent and disk ids")
	vitals := fs.Bool("vitals", false, "ask each agent for its vitals (load, CPU, memory, disks)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	names, err := deploymentsToShow(ctx, cl, rf, pos, "instances")
	if err != nil {
		return err
	}
	var all []api.Instance
	for k, name := range names {
		is, err := cl.Instances(ctx, name, *ps || *vitals)
		if err != nil {
			return remoteError(err)
		}
		all = append(all, is...)
		if rf.json {
			continue
		}
		if k > 0 {
			fmt.Fprintln(c.stdout)
		}
		fmt.Fprintf(c.stdout, "Deployment '%s'\n\n", name)
		if err := printInstances(c, is, *ps, *details, *vitals); err != nil {
			return err
		}
	}
	if rf.json {
		if all == nil {
			all = []api.Instance{}
		}
		return printJSON(c.stdout, all)
	}
	return nil
}

func printInstances(c *cli, is []api.Instance, ps, details, vitals bool) error {
	header := []string{"Instance"}
	if ps {
		header = append(header, "Process")
	}
	header = append(header, "State")
	if ps || vitals {
		header = append(header, "Process State")
	}
	header = append(header, "AZ", "IPs")
	if details {
		header = append(header, "Index", "Bootstrap", "VM CID", "Agent ID", "Disk CID")
	}
	if vitals {
		header = append(header, vitalsHeader...)
	}
	var rows [][]string
	for _, i := range is {
		row := []string{i.Group + "/" + i.ID}
		if ps {
			row = append(row, "-")
		}
		row = append(row, i.State)
		if ps || vitals {
			row = append(row, dash(i.ProcessState))
		}
		row = append(row, dash(i.AZ), dash(strings.Join(i.IPs, ", ")))
		if details {
			boot := "false"
			if i.Bootstrap {
				boot = "true"
			}
			row = append(row, strconv.Itoa(i.Index), boot, dash(i.VMCID), dash(i.AgentID), dash(i.DiskCID))
		}
		if vitals {
			var v *api.Vitals
			if i.Probe != nil {
				v = i.Probe.Vitals
			}
			row = append(row, vitalsCells(v)...)
		}
		rows = append(rows, row)
		if ps && i.Probe != nil {
			for _, p := range i.Probe.Processes {
				prow := []string{"~", p.Name, "-", p.State, "-", "-"}
				if details {
					prow = append(prow, "-", "-", "-", "-", "-")
				}
				if vitals {
					prow = append(prow, make([]string, len(vitalsHeader))...)
					for k := len(prow) - len(vitalsHeader); k < len(prow); k++ {
						prow[k] = "-"
					}
				}
				rows = append(rows, prow)
			}
		}
	}
	if err := printTable(c.stdout, header, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d instances\n", len(is))
	for _, i := range is {
		if i.ProbeError != "" {
			fmt.Fprintf(c.stdout, "%s/%d: %s\n", i.Group, i.Index, i.ProbeError)
		}
	}
	return nil
}

var vitalsHeader = []string{"Uptime", "Load (1m, 5m, 15m)", "CPU User", "CPU Sys", "CPU Wait", "Memory", "Swap", "Disks"}

func vitalsCells(v *api.Vitals) []string {
	if v == nil {
		return []string{"-", "-", "-", "-", "-", "-", "-", "-"}
	}
	pct := func(s string) string {
		if s == "" {
			return "-"
		}
		return s + "%"
	}
	var disks []string
	for _, k := range sortedMapKeys(v.Disks) {
		disks = append(disks, k+" "+pct(v.Disks[k]))
	}
	up := "-"
	if v.UptimeSecs > 0 {
		up = hms(time.Duration(v.UptimeSecs) * time.Second)
	}
	return []string{up, dash(strings.Join(v.Load, ", ")), pct(v.CPUUser), pct(v.CPUSys), pct(v.CPUWait),
		pct(v.MemPercent), pct(v.SwapPct), dash(strings.Join(disks, ", "))}
}

func sortedMapKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func runVMs(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "vms", "[-d DEPLOYMENT]")
	rf := addRemoteFlags(fs, true)
	vitals := fs.Bool("vitals", false, "ask each agent for its vitals (load, CPU, memory, disks)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	names, err := deploymentsToShow(ctx, cl, rf, pos, "vms")
	if err != nil {
		return err
	}
	var all []api.VM
	for k, name := range names {
		vms, err := cl.VMs(ctx, name, *vitals)
		if err != nil {
			return remoteError(err)
		}
		all = append(all, vms...)
		if rf.json {
			continue
		}
		if k > 0 {
			fmt.Fprintln(c.stdout)
		}
		fmt.Fprintf(c.stdout, "Deployment '%s'\n\n", name)
		header := []string{"Instance", "AZ", "IPs", "VM CID", "Agent ID", "CPI", "Created"}
		if *vitals {
			header = append([]string{"Instance", "Process State"}, header[1:]...)
			header = append(header, vitalsHeader...)
		}
		var rows [][]string
		for _, v := range vms {
			row := []string{dash(v.Instance)}
			if *vitals {
				row = append(row, dash(v.ProcessState))
			}
			row = append(row, dash(v.AZ), dash(strings.Join(v.IPs, ", ")), v.CID, dash(v.AgentID), dash(v.CPI), when(v.CreatedAt))
			if *vitals {
				row = append(row, vitalsCells(v.Vitals)...)
			}
			rows = append(rows, row)
		}
		if err := printTable(c.stdout, header, rows); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "\n%d vms\n", len(vms))
	}
	if rf.json {
		if all == nil {
			all = []api.VM{}
		}
		return printJSON(c.stdout, all)
	}
	return nil
}

func runDisks(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "disks", "[-d DEPLOYMENT]")
	rf := addRemoteFlags(fs, true)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	d, rest, err := deploymentArg(rf, pos, "disks", false)
	if err != nil {
		return err
	}
	if err := noArgs("disks", rest); err != nil {
		return err
	}
	cl, err := rf.client()
	if err != nil {
		return err
	}
	disks, err := cl.Disks(ctx, d)
	if err != nil {
		return remoteError(err)
	}
	if rf.json {
		return printJSON(c.stdout, disks)
	}
	var rows [][]string
	for _, d := range disks {
		rows = append(rows, []string{d.CID, d.Deployment, dash(d.Instance), fmt.Sprintf("%d MiB", d.SizeMB), strconv.FormatBool(d.Active), dash(d.CPI), when(d.CreatedAt)})
	}
	if err := printTable(c.stdout, []string{"Disk CID", "Deployment", "Instance", "Size", "Active", "CPI", "Created"}, rows); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "\n%d disks\n", len(disks))
	return nil
}
