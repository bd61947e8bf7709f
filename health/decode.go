package health

import (
	"bytes"
	"encoding/json"
	"errors"
)

// decodeHeartbeat reads the three fields the monitor needs from a heartbeat. It gives
// the same answer as json.Unmarshal into heartbeatWire (FuzzDecodeHeartbeat holds it to
// that), at about a third of the cost: the document is validated, then only the top
// level is walked and the vitals are skipped, not decoded. Anything unusual — escapes,
// non-ASCII, keys matching only case-insensitively — goes to json.Unmarshal.
func decodeHeartbeat(data []byte, hb *heartbeatWire) error {
	if !json.Valid(data) {
		return json.Unmarshal(data, hb) // for its error
	}
	if i := skipWS(data, 0); data[i] != '{' {
		return errNotObject // null, a number…: Unmarshal would take them silently
	}
	if ok := scanHeartbeat(data, hb); !ok {
		*hb = heartbeatWire{}
		return json.Unmarshal(data, hb)
	}
	return nil
}

var errNotObject = errors.New("heartbeat is not a JSON object")

// scanHeartbeat walks a valid JSON document's top-level object. It returns false when
// it cannot be sure to match json.Unmarshal.
func scanHeartbeat(d []byte, hb *heartbeatWire) bool {
	i := skipWS(d, 0)
	if i >= len(d) || d[i] != '{' {
		return false
	}
	i++
	for {
		i = skipWS(d, i)
		if i >= len(d) {
			return false
		}
		if d[i] == '}' {
			return true
		}
		if d[i] == ',' {
			i = skipWS(d, i+1)
		}
		key, next, ok := plainString(d, i)
		if !ok {
			return false
		}
		i = skipWS(d, next)
		if i >= len(d) || d[i] != ':' {
			return false
		}
		i = skipWS(d, i+1)
		var field *string
		switch string(key) { // no allocation: the compiler matches the bytes
		case "deployment":
			field = &hb.Deployment
		case "job_state":
			field = &hb.JobState
		case "node_id":
			field = &hb.NodeID
		default:
			if bytes.EqualFold(key, []byte("deployment")) || bytes.EqualFold(key, []byte("job_state")) || bytes.EqualFold(key, []byte("node_id")) {
				return false // encoding/json matches keys case-insensitively
			}
		}
		if field != nil {
			switch {
			case i < len(d) && d[i] == '"':
				v, next, ok := plainString(d, i)
				if !ok {
					return false
				}
				*field, i = string(v), next
				continue
			case bytes.HasPrefix(d[i:], []byte("null")):
				i += 4
				continue
			default:
				return false // a wrong type: Unmarshal's error
			}
		}
		if i = skipValue(d, i); i < 0 {
			return false
		}
	}
}

func skipWS(d []byte, i int) int {
	for i < len(d) && (d[i] == ' ' || d[i] == '\t' || d[i] == '\n' || d[i] == '\r') {
		i++
	}
	return i
}

// plainString returns the contents of the string starting at d[i] when it holds neither
// escapes nor non-ASCII bytes.
func plainString(d []byte, i int) ([]byte, int, bool) {
	if i >= len(d) || d[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(d); j++ {
		switch c := d[j]; {
		case c == '"':
			return d[i+1 : j], j + 1, true
		case c == '\\' || c >= 0x80:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// skipValue returns the index after the value starting at d[i] (d is valid JSON).
func skipValue(d []byte, i int) int {
	depth := 0
	for i < len(d) {
		switch d[i] {
		case '"':
			i++
			for i < len(d) && d[i] != '"' {
				if d[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
			i++
		case ',':
			if depth == 0 {
				return i
			}
			i++
		default:
			i++
		}
		if depth == 0 && i < len(d) && (d[i] == ',' || d[i] == '}') {
			return i
		}
	}
	return -1
}
