package release

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Stemcell is a stemcell's stemcell.MF.
type Stemcell struct {
	Name            string         `yaml:"name" json:"name"`
	OperatingSystem string         `yaml:"operating_system" json:"operating_system"`
	Version         string         `yaml:"version" json:"version"`
	SHA1            string         `yaml:"sha1,omitempty" json:"sha1,omitempty"` // of the image
	APIVersion      int            `yaml:"api_version,omitempty" json:"api_version,omitempty"`
	StemcellFormats []string       `yaml:"stemcell_formats,omitempty" json:"stemcell_formats,omitempty"`
	CloudProperties map[string]any `yaml:"cloud_properties,omitempty" json:"cloud_properties,omitempty"`
}

// ParseStemcellManifest parses stemcell.MF. BOSH writes version as a string but older
// stemcells carry a number; both are read as the string.
func ParseStemcellManifest(data []byte) (*Stemcell, error) {
	var s Stemcell
	if _, err := decodeYAML("stemcell.MF", data, &s); err != nil {
		return nil, fmt.Errorf("parse stemcell manifest: %w", err)
	}
	for _, k := range []struct{ key, v string }{{"name", s.Name}, {"operating_system", s.OperatingSystem}, {"version", s.Version}} {
		if k.v == "" {
			return nil, fmt.Errorf("parse stemcell manifest: stemcell.MF: %s is missing", k.key)
		}
	}
	if relPath(s.OperatingSystem) != nil || strings.Contains(s.OperatingSystem, "/") || relPath(s.Version) != nil || strings.Contains(s.Version, "/") {
		return nil, fmt.Errorf("parse stemcell manifest: stemcell.MF: operating_system %q and version %q must be plain names", s.OperatingSystem, s.Version)
	}
	if s.APIVersion == 0 {
		s.APIVersion = 1 // BOSH's default when the key is absent
	}
	return &s, nil
}

// ReadStemcell reads a stemcell's manifest from a stemcell tarball, or from a bare
// stemcell.MF (what the local CPI's stemcells hold).
func ReadStemcell(ctx context.Context, rd io.Reader) (*Stemcell, error) {
	br := bufio.NewReader(rd)
	magic, _ := br.Peek(2)
	if !bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		data, err := io.ReadAll(io.LimitReader(br, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read stemcell manifest: %w", err)
		}
		return ParseStemcellManifest(data)
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("read stemcell tarball: %w", err)
	}
	defer zr.Close()
	// Stop at stemcell.MF: the image beside it may be gigabytes that need not be read.
	tr := tar.NewReader(zr)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("read stemcell tarball: no stemcell.MF in it")
		}
		if err != nil {
			return nil, fmt.Errorf("read stemcell tarball: %w", err)
		}
		if h.Typeflag == tar.TypeReg && path.Clean(strings.TrimPrefix(h.Name, "./")) == "stemcell.MF" {
			data, err := io.ReadAll(io.LimitReader(tr, 1<<20))
			if err != nil {
				return nil, fmt.Errorf("read stemcell tarball: %w", err)
			}
			return ParseStemcellManifest(data)
		}
	}
}
