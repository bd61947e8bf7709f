// Package health owns the health monitor: heartbeat tracking, alerts, and the
// resurrector with meltdown protection.
package health
