// Package health owns the health monitor: heartbeat tracking, alerts, and the
// resurrector with meltdown protection, plus the cloud check (`bosun cck`) as a library.
//
// Every director's Monitor subscribes to hm.agent.heartbeat.* and hm.agent.alert.* and
// keeps each agent's last heartbeat (about 140 bytes per agent). The one holding the
// monitor's Postgres advisory lock (Run with an Elector) analyses every AnalyzeInterval:
// it reloads which agents the director expects (instances with a VM and an agent id),
// skips deployments a task holds, and raises alerts for agents silent past the agent
// timeout, agents reporting job_state failing, and rogue agents no instance names.
// Alerts go to plugins (log, the events table, a webhook) through a dispatcher that
// reports each condition once until it clears.
//
// Unresponsive instances are resurrected by queueing a state.TaskResurrect task, which
// the reconciler's workers converge like a deploy. Meltdown protection (BOSH's: at least
// MinDown instances and Percent of the deployment down within Window) turns that into
// one alert and no tasks. Per-deployment Rules (the `resurrection:` section of
// bosun.yml) switch it off, include or exclude instance groups, and allow instances
// with persistent disks.
package health
