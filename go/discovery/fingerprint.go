package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Fingerprint summarises the model directories under root, so a poller can rescan only when one changed:
// which subdirectories have a manifest, its bytes, and the size and modification time of every file it
// lists. Exports rewrite lorakit.json, so the manifest alone would signal them; the listed files make a
// model copied manifest-first appear once its last file lands. timeout bounds the whole walk (0 = none).
func Fingerprint(root string, timeout time.Duration) (string, error) {
	return bounded(timeout, "fingerprinting the models root", func() (string, error) { return fingerprint(root) })
}

func fingerprint(root string) (string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return "", fmt.Errorf("models root %q: %w", root, err)
	}
	h := sha256.New()
	for _, e := range entries { // ReadDir sorts by name
		if ignoredName(e.Name()) != "" {
			continue // an export in progress must not trigger a reload before its rename
		}
		dir := filepath.Join(root, e.Name())
		name := filepath.Join(dir, ManifestFile)
		if _, err := regularFile(name); err != nil {
			continue // not a model directory, or not one Scan will read
		}
		data, err := readManifestBytes(name)
		if err != nil {
			return "", fmt.Errorf("reading %s/%s: %w", e.Name(), ManifestFile, err)
		}
		fmt.Fprintf(h, "%s\x00%s\x00", e.Name(), data)
		hashListedFiles(h, dir, data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func readManifestBytes(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
}

// hashListedFiles adds the size and modification time (or absence) of each file the manifest lists; files
// are stat'ed, never opened, so polling stays cheap. An unparsable manifest adds nothing (its bytes count).
func hashListedFiles(h hash.Hash, dir string, manifest []byte) {
	var listed struct {
		Files map[string]string `json:"files"`
	}
	if json.Unmarshal(manifest, &listed) != nil {
		return
	}
	rels := make([]string, 0, len(listed.Files))
	for rel := range listed.Files {
		if checkRelPath(rel) == nil {
			rels = append(rels, rel)
		}
	}
	sort.Strings(rels)
	for _, rel := range rels {
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			fmt.Fprintf(h, "%s\x00missing\x00", rel)
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%v\x00", rel, info.Size(), info.ModTime().UnixNano(), info.Mode())
	}
}
