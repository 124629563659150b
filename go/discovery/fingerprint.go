package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Fingerprint summarises the manifests under root (which subdirectories have one, and their bytes), so a
// poller can rescan only when a model was added, removed or re-exported. Exports rewrite lorakit.json with
// fresh checksums, so manifest bytes are a sufficient change signal; SIGHUP covers anything else.
func Fingerprint(root string) (string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return "", fmt.Errorf("models root %q: %w", root, err)
	}
	h := sha256.New()
	for _, e := range entries { // ReadDir sorts by name
		if ignoredName(e.Name()) != "" {
			continue // an export in progress must not trigger a reload before its rename
		}
		f, err := os.Open(filepath.Join(root, e.Name(), ManifestFile))
		if err != nil {
			continue // not a model directory (or unreadable: Scan reports it)
		}
		fmt.Fprintf(h, "%s\x00", e.Name())
		_, err = io.Copy(h, io.LimitReader(f, maxManifestBytes+1))
		f.Close()
		if err != nil {
			return "", fmt.Errorf("reading %s/%s: %w", e.Name(), ManifestFile, err)
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
