package main

import "gopkg.in/yaml.v2"

func yamlv2Map(b []byte) (map[any]any, error) {
	var m map[any]any
	err := yaml.Unmarshal(b, &m)
	return m, err
}
