package bus

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// Conn adapts a *nats.Conn to agent/protocol's Transport.
type Conn struct{ NC *nats.Conn }

// Publish sends data on subject.
func (c Conn) Publish(subject string, data []byte) error {
	if err := c.NC.Publish(subject, data); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}

// Subscribe calls handle for each message on subject until the returned func is called.
// The subscription is flushed so the server has it before Subscribe returns; a permission
// violation surfaces through the connection's error handler.
func (c Conn) Subscribe(subject string, handle func(subject string, data []byte)) (func() error, error) {
	sub, err := c.NC.Subscribe(subject, func(m *nats.Msg) { handle(m.Subject, m.Data) })
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	if err := c.NC.Flush(); err != nil {
		sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	return sub.Unsubscribe, nil
}
