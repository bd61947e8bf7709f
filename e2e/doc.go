// Package e2e builds the binaries and drives whole journeys on real Postgres, NATS and git.
package e2e
