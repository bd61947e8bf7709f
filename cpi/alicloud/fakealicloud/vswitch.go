package fakealicloud

import (
	"fmt"
	"net/netip"
	"slices"
)

// AddVSwitch makes a VSwitch on cidr in zone and returns its id: a whole deploy
// against the fake uses a 127.x VSwitch, so the local agents' jobs bind to addresses
// this machine has.
func (c *Cloud) AddVSwitch(zone, cidr string) (string, error) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("fake vswitch in %s: %w", zone, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !slices.Contains(c.zones, zone) {
		return "", fmt.Errorf("fake vswitch: no zone %s (there are %v)", zone, c.zones)
	}
	id := "vsw-" + newID(20)
	c.vswitches = append(c.vswitches, vswitch{id: id, zone: zone, cidr: prefix.Masked()})
	return id, nil
}
