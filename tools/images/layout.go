package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// The one non-root identity of every image we build from an empty root (distroless's
// "nonroot"): numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
const (
	nonrootUID = 65532
	nonrootGID = 65532
)

// epoch is every entry's modification time, so the same inputs give the same tar bytes.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// entry is one file or directory of an image's root filesystem, with the exact owner and
// mode it has in the image (docker import keeps both; a Dockerfile COPY would not let us say
// them as plainly).
type entry struct {
	Path     string      // absolute path in the image
	Dir      bool        // a directory (Src and Data empty)
	Mode     fs.FileMode // permission bits plus fs.ModeSticky
	UID, GID int
	Data     []byte // contents of a small generated file
	Src      string // host path of a large file (a binary), read when hashed and written
	sum      string // sha256 of the contents, filled by hash
}

// config is what `docker import --change` sets on the image.
type config struct {
	User        string
	WorkingDir  string
	Entrypoint  []string
	Cmd         []string // nil: not set; empty: CMD [] like upstream SPIRE
	Env         []string
	Healthcheck []string // CMD form; nil: none
	Labels      map[string]string
}

// layout is everything that decides an image's content: hashing it gives the cache key.
type layout struct {
	Base    string // host path of a root filesystem tarball to start from ("" = empty root)
	BaseSum string // its sha256 (recorded beside it when it was made)
	Entries []entry
	Config  config
}

// inputsLabel carries the hash of an image's inputs; `make images` skips an image whose
// label already equals the hash of what it would build.
const inputsLabel = "org.ztbank.image.inputs"

// hash returns the content hash of the layout: every entry's path, type, owner, mode and
// content hash, the base tarball's hash and the image configuration.
func (l *layout) hash() (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "ztbank-images v1\nbase %s\n", l.BaseSum)
	if err := l.normalise(); err != nil {
		return "", err
	}
	for i := range l.Entries {
		e := &l.Entries[i]
		if !e.Dir {
			sum, err := e.contentSum()
			if err != nil {
				return "", err
			}
			e.sum = sum
		}
		fmt.Fprintf(h, "%s dir=%t mode=%o owner=%d:%d sum=%s\n", e.Path, e.Dir, uint32(e.Mode), e.UID, e.GID, e.sum)
	}
	cfg := l.Config
	cfg.Labels = nil // the labels carry the hash itself
	b, err := json.Marshal(cfg)
	if err != nil {
		return "", fmt.Errorf("encode image config: %w", err)
	}
	h.Write(b)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func (e *entry) contentSum() (string, error) {
	if e.Src == "" {
		s := sha256.Sum256(e.Data)
		return hex.EncodeToString(s[:]), nil
	}
	return fileSum(e.Src)
}

// sumCache remembers file hashes by path, size and modification time, so a warm run does not
// read hundreds of MB of unchanged binaries again (the go command leaves an up-to-date binary
// untouched). Loaded and saved by the builder; nil means no cache.
var (
	sumCache map[string]cachedSum
	sumMu    sync.Mutex // the rootfs goroutine hashes while the main one does
)

type cachedSum struct {
	Size    int64
	ModTime time.Time
	Sum     string
}

func fileSum(name string) (string, error) {
	st, err := os.Stat(name)
	if err != nil {
		return "", err
	}
	sumMu.Lock()
	c, ok := sumCache[name]
	sumMu.Unlock()
	if ok && c.Size == st.Size() && c.ModTime.Equal(st.ModTime()) {
		return c.Sum, nil
	}
	sum, err := readSum(name)
	sumMu.Lock()
	if err == nil && sumCache != nil {
		sumCache[name] = cachedSum{Size: st.Size(), ModTime: st.ModTime(), Sum: sum}
	}
	sumMu.Unlock()
	return sum, err
}

func readSum(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// normalise cleans paths, adds missing parent directories (root-owned, 0755) and sorts the
// entries, so that a tar always lists a directory before what it holds.
func (l *layout) normalise() error {
	seen := map[string]bool{}
	for i := range l.Entries {
		p := path.Clean(l.Entries[i].Path)
		if !strings.HasPrefix(p, "/") || p == "/" {
			return fmt.Errorf("layout entry %q: want an absolute path below /", l.Entries[i].Path)
		}
		if seen[p] {
			return fmt.Errorf("layout entry %q listed twice", p)
		}
		seen[p] = true
		l.Entries[i].Path = p
	}
	for _, e := range l.Entries {
		for d := path.Dir(e.Path); d != "/"; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				l.Entries = append(l.Entries, entry{Path: d, Dir: true, Mode: 0o755})
			}
		}
	}
	sort.Slice(l.Entries, func(i, j int) bool { return l.Entries[i].Path < l.Entries[j].Path })
	return nil
}

// writeTar writes the image's root filesystem: the base tarball's entries first (the
// directories our entries would also name keep the base's owner and mode), then ours.
func (l *layout) writeTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	inBase := map[string]bool{}
	if l.Base != "" {
		f, err := os.Open(l.Base)
		if err != nil {
			return err
		}
		defer f.Close()
		tr := tar.NewReader(f)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", l.Base, err)
			}
			inBase["/"+strings.TrimSuffix(strings.TrimPrefix(path.Clean(hdr.Name), "./"), "/")] = true
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("copy %s from %s: %w", hdr.Name, l.Base, err)
			}
		}
	}
	for _, e := range l.Entries {
		if e.Dir && inBase[e.Path] {
			continue
		}
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(e.Path, "/"),
			Mode:    int64(e.Mode.Perm()),
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.Mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		if e.Dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		if err := writeFile(tw, hdr, e); err != nil {
			return fmt.Errorf("add %s: %w", e.Path, err)
		}
	}
	return tw.Close()
}

func writeFile(tw *tar.Writer, hdr *tar.Header, e entry) error {
	if e.Src == "" {
		hdr.Size = int64(len(e.Data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(e.Data)
		return err
	}
	f, err := os.Open(e.Src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr.Size = st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// changes renders the configuration as `docker import --change` instructions.
func (c config) changes() ([]string, error) {
	var out []string
	add := func(instr string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", instr, err)
		}
		out = append(out, instr+" "+string(b))
		return nil
	}
	if c.User != "" {
		out = append(out, "USER "+c.User)
	}
	if c.WorkingDir != "" {
		out = append(out, "WORKDIR "+c.WorkingDir)
	}
	for _, e := range c.Env {
		out = append(out, "ENV "+e)
	}
	if c.Entrypoint != nil {
		if err := add("ENTRYPOINT", c.Entrypoint); err != nil {
			return nil, err
		}
	}
	if c.Cmd != nil {
		if err := add("CMD", c.Cmd); err != nil {
			return nil, err
		}
	}
	if c.Healthcheck != nil {
		b, err := json.Marshal(c.Healthcheck)
		if err != nil {
			return nil, fmt.Errorf("encode HEALTHCHECK: %w", err)
		}
		out = append(out, "HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=5 CMD "+string(b))
	}
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = append(out, fmt.Sprintf("LABEL %s=%s", k, c.Labels[k]))
	}
	return out, nil
}
