package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/bosun-gitops/bosun/cpi"
	"github.com/bosun-gitops/bosun/cpi/alicloud"
)

func init() {
	registerCPI("alicloud", builtinCPI{
		summary: "VMs are ECS instances; disks cloud disks; stemcells ECS images (imported from OSS, or light)",
		flags:   alicloudCPIFlags,
	})
}

func alicloudCPIFlags(fs *flag.FlagSet) func(*slog.Logger) (cpi.CPI, error) {
	config := fs.String("config", "", "JSON `file` with the Alibaba Cloud CPI's settings, keyed as BOSH's alicloud: block (region, availability_zone, access_key_id, access_key_secret, security_token, ecs_endpoint, vpc_endpoint, encrypted, kms_key_id, …)")
	return func(log *slog.Logger) (cpi.CPI, error) {
		if *config == "" {
			return nil, usageError("--config is required: the Alibaba Cloud CPI needs its region and access key")
		}
		b, err := os.ReadFile(*config)
		if err != nil {
			return nil, fmt.Errorf("read CPI config: %w", err)
		}
		cfg, err := alicloud.ParseConfig(b)
		if err != nil {
			return nil, fmt.Errorf("CPI config %s: %w", *config, err)
		}
		return alicloud.New(cfg, log)
	}
}
