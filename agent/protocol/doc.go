// Package protocol is the wire contract between director and agent: subjects, envelopes,
// methods, error codes and the protocol version. It imports only the standard library.
package protocol
