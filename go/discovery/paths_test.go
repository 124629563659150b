package discovery_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lorakit/lorakit/go/discovery"
	"github.com/lorakit/lorakit/go/discovery/discoverytest"
)

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// A symlinked model directory is served when it stays inside the root, skipped with ErrUnsafePath when
// it leads outside, unless FollowSymlinks is set.
func TestSymlinkedModelDirectories(t *testing.T) {
	outside := t.TempDir()
	discoverytest.WriteModel(t, outside, "elsewhere", discoverytest.Spec{Name: "elsewhere"})
	root := t.TempDir()
	discoverytest.WriteModel(t, root, "intent_v3", discoverytest.Spec{Name: "intent"})
	symlink(t, "intent_v3", filepath.Join(root, "intent_current"))
	symlink(t, filepath.Join(outside, "elsewhere"), filepath.Join(root, "foreign"))

	cat := scan(t, root, discovery.Options{})
	if got := strings.Join(ids(cat.Models), ","); got != "intent_current,intent_v3" {
		t.Errorf("served %s, want the inside link and its target", got)
	}
	err := skipped(t, cat, "foreign")
	if !errors.Is(err, discovery.ErrUnsafePath) || !strings.Contains(err.Error(), "outside the models root") {
		t.Errorf("foreign link: %v", err)
	}

	cat = scan(t, root, discovery.Options{FollowSymlinks: true})
	if cat.Model("foreign") == nil {
		t.Errorf("FollowSymlinks: foreign not served (skipped %v)", cat.Skipped)
	}
}

// A listed file that is a symlink out of the root is refused like a directory link.
func TestSymlinkedFileOutsideRootIsRefused(t *testing.T) {
	root := t.TempDir()
	dir := discoverytest.WriteModel(t, root, "m", discoverytest.Spec{})
	outside := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.Rename(filepath.Join(dir, "tokenizer.json"), outside); err != nil {
		t.Fatal(err)
	}
	symlink(t, outside, filepath.Join(dir, "tokenizer.json"))
	err := skipped(t, scan(t, root, discovery.Options{}), "m")
	if !errors.Is(err, discovery.ErrUnsafePath) || !strings.Contains(err.Error(), "tokenizer.json") {
		t.Errorf("outside file: %v", err)
	}
	if cat := scan(t, root, discovery.Options{FollowSymlinks: true}); cat.Model("m") == nil {
		t.Errorf("FollowSymlinks: not served (skipped %v)", cat.Skipped)
	}
}

// FIFOs (and other special files) are never opened: a scan over them returns at once with ErrUnsafePath,
// where opening one for reading would wait for a writer forever.
func TestSpecialFilesAreNeverOpened(t *testing.T) {
	root := t.TempDir()
	dir := discoverytest.WriteModel(t, root, "fifo_weights", discoverytest.Spec{})
	fifo := func(name string) {
		t.Helper()
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(name, 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
	}
	fifo(filepath.Join(dir, "model.safetensors"))
	fifo(filepath.Join(discoverytest.WriteModel(t, root, "fifo_manifest", discoverytest.Spec{}), "lorakit.json"))

	done := make(chan *discovery.Catalog, 1)
	go func() {
		cat, _ := discovery.Scan(root, discovery.Options{})
		done <- cat
	}()
	var cat *discovery.Catalog
	select {
	case cat = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("scan blocked on a FIFO")
	}
	for _, id := range []string{"fifo_weights", "fifo_manifest"} {
		if err := skipped(t, cat, id); !errors.Is(err, discovery.ErrUnsafePath) || !strings.Contains(err.Error(), "FIFO") {
			t.Errorf("%s: %v", id, err)
		}
	}
	if _, err := discovery.Fingerprint(root, 5*time.Second); err != nil {
		t.Errorf("fingerprint over FIFOs: %v", err)
	}
}

// A directory whose reads do not finish within ReadTimeout is skipped with ErrTimeout; the scan returns.
func TestReadTimeoutSkipsAStuckDirectory(t *testing.T) {
	root := t.TempDir()
	sha := discoverytest.WriteBase(t, filepath.Join(root, "base"), "w")
	discoverytest.WriteModel(t, root, "stuck", discoverytest.Spec{Adapter: true, BasePath: "../base", BaseSHA: sha})
	discoverytest.WriteModel(t, root, "fine", discoverytest.Spec{})
	release := make(chan struct{})
	defer close(release)
	opts := discovery.Options{
		ReadTimeout: 200 * time.Millisecond,
		// Stands in for a read stuck in the kernel (a hung network mount): it never returns in time.
		ResolveBase: func(string) (string, error) {
			<-release
			return "", errors.New("released")
		},
	}
	start := time.Now()
	cat := scan(t, root, opts)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("scan took %s", elapsed)
	}
	if err := skipped(t, cat, "stuck"); !errors.Is(err, discovery.ErrTimeout) || !strings.Contains(err.Error(), "200ms") {
		t.Errorf("stuck: %v", err)
	}
	if cat.Model("fine") == nil {
		t.Errorf("the other model was not served: %v", cat.Skipped)
	}
}

// A model copied manifest first is skipped until complete; the fingerprint changes as its files land, so a
// poller rescans and picks it up.
func TestFingerprintSeesAModelCompleting(t *testing.T) {
	staging := t.TempDir()
	src := discoverytest.WriteModel(t, staging, "m", discoverytest.Spec{})
	root := t.TempDir()
	dst := filepath.Join(root, "m")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile := func(name string) {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fp := func() string {
		t.Helper()
		s, err := discovery.Fingerprint(root, 0)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	copyFile("lorakit.json")
	partial := fp()
	if err := skipped(t, scan(t, root, discovery.Options{}), "m"); !errors.Is(err, discovery.ErrMissingFile) {
		t.Fatalf("manifest only: %v", err)
	}
	seen := map[string]bool{partial: true}
	for _, name := range []string{"config.json", "tokenizer.json", "model.safetensors"} {
		copyFile(name)
		now := fp()
		if seen[now] {
			t.Fatalf("fingerprint unchanged after %s landed", name)
		}
		seen[now] = true
	}
	if cat := scan(t, root, discovery.Options{}); cat.Model("m") == nil {
		t.Fatalf("complete model not served: %v", cat.Skipped)
	}
}
