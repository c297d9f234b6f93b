package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DocFile is the key document's name inside a directory store.
const DocFile = "signing-keys.json"

// Dir stores the document as a file in a directory shared by the replicas (a volume on
// compose). Writers serialise on flock(2) of a lock file beside it (the kernel's lock, so
// it holds across containers sharing the volume) and replace the file by rename, so a reader
// never sees half a document. The file is mode 0600: it holds private keys.
type Dir string

func (d Dir) path() string { return filepath.Join(string(d), DocFile) }

// Load reads the document; a missing file is an empty store.
func (d Dir) Load(context.Context) (Doc, string, error) {
	b, err := os.ReadFile(d.path())
	if errors.Is(err, os.ErrNotExist) {
		return Doc{}, "", nil
	}
	if err != nil {
		return Doc{}, "", err
	}
	doc, err := decode(b)
	return doc, version(b), err
}

// Save writes doc if the file still has version prev.
func (d Dir) Save(_ context.Context, doc Doc, prev string) error {
	lock, err := os.OpenFile(filepath.Join(string(d), ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%s: %w", string(d), ErrReadOnly)
	}
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway
	cur, err := os.ReadFile(d.path())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if version(cur) != prev {
		return ErrConflict
	}
	b, err := encode(doc)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(string(d), ".signing-keys-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), d.path())
}

// Open returns the store named by spec: dir:<path> or secretsmanager:<secret>; endpoint
// and region, when set, replace Secrets Manager's regional endpoint and the SDK's region.
func Open(ctx context.Context, spec, endpoint, region string) (Store, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch {
	case kind == "dir" && arg != "":
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s is not a directory", arg)
		}
		return Dir(arg), nil
	case kind == "secretsmanager" && arg != "":
		return OpenSecretsManager(ctx, arg, endpoint, region)
	}
	return nil, fmt.Errorf("%q: want dir:<path> or secretsmanager:<secret>", spec)
}
