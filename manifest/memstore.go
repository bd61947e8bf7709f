package manifest

import "errors"

// NewStore returns a vars store held in memory, starting from values (a map node; nil
// for none): a director keeps generated variables in its database, not in a file. Get
// generates what it lacks as OpenStore's store does; read Values after interpolating to
// find what was generated. Save is refused: the caller persists the values itself.
func NewStore(values *Node) *Store {
	if values == nil || values.Kind != MapNode {
		values = &Node{Kind: MapNode}
	}
	return &Store{values: values, generate: generateValue}
}

var errNoFile = errors.New("saving vars store: this store is held in memory and has no file")

func (s *Store) saveable() error {
	if s.path == "" {
		return errNoFile
	}
	return nil
}
