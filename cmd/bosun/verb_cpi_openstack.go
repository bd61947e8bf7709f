package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/openstack"
)

func init() {
	registerCPI("openstack", builtinCPI{
		summary: "VMs are Nova servers; disks Cinder volumes; stemcells Glance images",
		flags:   openstackCPIFlags,
	})
}

func openstackCPIFlags(fs *flag.FlagSet) func(*slog.Logger) (cpi.CPI, error) {
	config := fs.String("config", "", "JSON file with the OpenStack CPI's settings, keyed as BOSH's `openstack:` block (auth_url, username/api_key or application_credential_id/_secret, project, domain, region, default_key_name, default_security_groups, …)")
	return func(log *slog.Logger) (cpi.CPI, error) {
		if *config == "" {
			return nil, usageError("--config is required: the OpenStack CPI needs its auth_url and credentials")
		}
		b, err := os.ReadFile(*config)
		if err != nil {
			return nil, fmt.Errorf("read CPI config: %w", err)
		}
		cfg, err := openstack.ParseConfig(b)
		if err != nil {
			return nil, fmt.Errorf("CPI config %s: %w", *config, err)
		}
		return openstack.New(cfg, log)
	}
}
