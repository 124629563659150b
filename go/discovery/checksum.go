package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// FileSHA256 returns the lower-case hex sha256 of a regular file (anything else is refused unopened).
func FileSHA256(name string) (string, error) {
	if _, err := regularFile(name); err != nil {
		return "", err
	}
	f, err := os.Open(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%w: %s", ErrMissingFile, name)
		}
		return "", fmt.Errorf("%w: %v", ErrMissingFile, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMissingFile, err)
	}
	if !info.Mode().IsRegular() {
		return "", fmt.Errorf("%w: %s is not a regular file", ErrMissingFile, name)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%w: reading %s: %v", ErrMissingFile, name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sortedFiles lists the manifest's sha256 table in name order.
func (m *Manifest) sortedFiles() []string {
	rels := make([]string, 0, len(m.Files))
	for rel := range m.Files {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	return rels
}

// VerifyFiles checks that every file in the manifest's sha256 table exists under dir and matches.
// Files are visited in sorted order so the reported problem is deterministic.
func VerifyFiles(dir string, m *Manifest) error {
	for _, rel := range m.sortedFiles() {
		if err := checkRelPath(rel); err != nil {
			return fmt.Errorf("%w: %v", ErrManifest, err)
		}
		got, err := FileSHA256(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return fmt.Errorf("%s (listed in %s): %w", rel, ManifestFile, err)
		}
		if got != m.Files[rel] {
			return fmt.Errorf("%w: %s has sha256 %s, %s lists %s", ErrChecksum, rel, got, ManifestFile, m.Files[rel])
		}
	}
	return nil
}
