package main

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testLayout(t *testing.T, bin string) *layout {
	t.Helper()
	return &layout{
		Entries: []entry{
			{Path: "/etc/passwd", Mode: 0o644, Data: passwdFile},
			{Path: "/tmp", Dir: true, Mode: 0o777 | fs.ModeSticky},
			{Path: "/app/edge", Mode: 0o755, Src: bin},
			ownedDir("/home/nonroot"),
		},
		Config: config{User: "65532:65532", Entrypoint: []string{"/app/edge"}, Labels: map[string]string{}},
	}
}

// TestHashFollowsInputs: the cache label must change with every input that changes the image
// (or a stale image would be kept) and with nothing else (or nothing would ever be skipped).
func TestHashFollowsInputs(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "edge")
	if err := os.WriteFile(bin, []byte("binary v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	base, err := testLayout(t, bin).hash()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		change   func(l *layout)
		wantSame bool
	}{
		{"same inputs", func(*layout) {}, true},
		{"a label (the hash itself lives there)", func(l *layout) { l.Config.Labels[inputsLabel] = "x" }, true},
		{"entries listed in another order", func(l *layout) { l.Entries[0], l.Entries[2] = l.Entries[2], l.Entries[0] }, true},
		{"binary bytes", func(l *layout) {
			other := filepath.Join(dir, "edge2")
			if err := os.WriteFile(other, []byte("binary v2"), 0o755); err != nil {
				t.Fatal(err)
			}
			l.Entries[2].Src = other
		}, false},
		{"file owner", func(l *layout) { l.Entries[0].UID = 1 }, false},
		{"file mode", func(l *layout) { l.Entries[0].Mode = 0o600 }, false},
		{"sticky bit", func(l *layout) { l.Entries[1].Mode = 0o777 }, false},
		{"generated file content", func(l *layout) { l.Entries[0].Data = []byte("root:x:0:0::/:/bin/sh\n") }, false},
		{"user", func(l *layout) { l.Config.User = "0:0" }, false},
		{"entrypoint", func(l *layout) { l.Config.Entrypoint = []string{"/app/other"} }, false},
		{"base tarball", func(l *layout) { l.BaseSum = "abc" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testLayout(t, bin)
			tc.change(l)
			got, err := l.hash()
			if err != nil {
				t.Fatal(err)
			}
			if same := got == base; same != tc.wantSame {
				t.Errorf("hash equal to the unchanged layout's = %v, want %v", same, tc.wantSame)
			}
		})
	}
}

type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Data     string
}

func readTar(t *testing.T, r io.Reader) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{hdr.Name, hdr.Typeflag, hdr.Mode, hdr.Uid, hdr.Gid, string(b)})
	}
}

// TestWriteTar: parents come before children, owners and modes are exactly the layout's, and
// over a base tarball a directory the base already has keeps the base's owner and mode.
func TestWriteTar(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "edge")
	if err := os.WriteFile(bin, []byte("ELF"), 0o700); err != nil {
		t.Fatal(err)
	}
	l := testLayout(t, bin)
	if _, err := l.hash(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := l.writeTar(&buf); err != nil {
		t.Fatal(err)
	}
	want := []tarEntry{
		{"app/", tar.TypeDir, 0o755, 0, 0, ""},
		{"app/edge", tar.TypeReg, 0o755, 0, 0, "ELF"},
		{"etc/", tar.TypeDir, 0o755, 0, 0, ""},
		{"etc/passwd", tar.TypeReg, 0o644, 0, 0, string(passwdFile)},
		{"home/", tar.TypeDir, 0o755, 0, 0, ""},
		{"home/nonroot/", tar.TypeDir, 0o755, nonrootUID, nonrootGID, ""},
		{"tmp/", tar.TypeDir, 0o1777, 0, 0, ""},
	}
	if diff := cmp.Diff(want, readTar(t, &buf)); diff != "" {
		t.Errorf("tar (-want +got):\n%s", diff)
	}

	// Over a base: /etc exists there (root, 0700 here to tell it apart) and must not be
	// listed again with our defaults.
	var base bytes.Buffer
	tw := tar.NewWriter(&base)
	for _, h := range []*tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o700},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	baseFile := filepath.Join(dir, "base.tar")
	if err := os.WriteFile(baseFile, base.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	over := &layout{Base: baseFile, Entries: []entry{{Path: "/etc/ztbank/x.conf", Mode: 0o644, Data: []byte("x")}}}
	if _, err := over.hash(); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := over.writeTar(&buf); err != nil {
		t.Fatal(err)
	}
	wantOver := []tarEntry{
		{"./", tar.TypeDir, 0o755, 0, 0, ""},
		{"./etc/", tar.TypeDir, 0o700, 0, 0, ""},
		{"etc/ztbank/", tar.TypeDir, 0o755, 0, 0, ""},
		{"etc/ztbank/x.conf", tar.TypeReg, 0o644, 0, 0, "x"},
	}
	if diff := cmp.Diff(wantOver, readTar(t, &buf)); diff != "" {
		t.Errorf("tar over a base (-want +got):\n%s", diff)
	}
}

func TestChanges(t *testing.T) {
	got, err := config{
		User:        "999:999",
		WorkingDir:  "/opt/spire",
		Entrypoint:  []string{"/opt/spire/bin/spire-server", "run"},
		Cmd:         []string{},
		Env:         []string{"LANG=C.UTF-8"},
		Healthcheck: []string{"/usr/local/bin/pg-entrypoint", "healthcheck"},
		Labels:      map[string]string{"b": "2", "a": "1"},
	}.changes()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"USER 999:999",
		"WORKDIR /opt/spire",
		"ENV LANG=C.UTF-8",
		`ENTRYPOINT ["/opt/spire/bin/spire-server","run"]`,
		"CMD []",
		`HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=5 CMD ["/usr/local/bin/pg-entrypoint","healthcheck"]`,
		"LABEL a=1",
		"LABEL b=2",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

// TestList: the list parses, names are unique, and every image the compose file and the
// manifests expect is there under its exact name.
func TestList(t *testing.T) {
	list, err := loadList("../..")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range list {
		got = append(got, im.Image)
	}
	version, err := spireVersion("../..")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ztbank/edge:dev", "ztbank/gateway:dev", "ztbank/user:dev", "ztbank/account:dev",
		"ztbank/payment:dev", "ztbank/ledger:dev", "ztbank/dbadmin:dev", "ztbank/devoidc:dev",
		"ztbank/composeinit:dev",
		"ztbank/spire-server:" + version, "ztbank/spire-agent:" + version,
		"ztbank/spire-controller-manager:0.6.3", "ztbank/postgres:15",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image list (-want +got):\n%s", diff)
	}
}
