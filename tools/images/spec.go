package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// listFile names every image `make images` builds, relative to the repository root.
const listFile = "deploy/images/images.json"

// image is one line of the list.
type image struct {
	Image   string `json:"image"`   // repository:tag, as compose and the manifests name it
	Build   string `json:"build"`   // static, spire or rootfs
	Package string `json:"package"` // the Go main package of the image's binary
	Rootfs  string `json:"rootfs,omitempty"`
	Layout  string `json:"layout,omitempty"` // a folder copied into the root as is (rootfs images)
	Main    string `json:"main,omitempty"`   // the main package inside the module (module images)
	// Dirs are empty directories owned by the non-root user (static images): mount points
	// whose new named volumes inherit that ownership, as compose's init-secrets relies on.
	Dirs []string `json:"dirs,omitempty"`
	// Optional images are built only when named (`images build <name>`): they are not needed
	// by compose or the tests and would lengthen every cold build.
	Optional bool `json:"optional,omitempty"`
}

// Name is the short name (edge, spire-server, postgres).
func (im image) Name() string {
	repo, _, _ := strings.Cut(im.Image, ":")
	return path.Base(repo)
}

// Binary is the file name of the image's Go binary: the last element of its package, or for
// a module built at a version (build "module") the image's name.
func (im image) Binary() string {
	if im.Build == "module" {
		return im.Name()
	}
	return path.Base(im.Package)
}

// BinaryPath is where the binary lives inside the image.
func (im image) BinaryPath() string {
	switch im.Build {
	case "spire":
		return "/opt/spire/bin/" + im.Binary()
	case "rootfs":
		return "/usr/local/bin/" + im.Binary()
	case "module":
		return "/" + im.Binary() // upstream's layout for spire-controller-manager
	}
	return "/app/" + im.Binary()
}

var imageRef = regexp.MustCompile(`^ztbank/[a-z0-9-]+:[A-Za-z0-9._-]+$`)

func loadList(root string) ([]image, error) {
	b, err := os.ReadFile(filepath.Join(root, listFile))
	if err != nil {
		return nil, fmt.Errorf("read image list: %w", err)
	}
	var list struct {
		Comment string  `json:"_comment"`
		Images  []image `json:"images"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return nil, fmt.Errorf("parse %s: %w", listFile, err)
	}
	seen := map[string]bool{}
	for _, im := range list.Images {
		if !imageRef.MatchString(im.Image) {
			return nil, fmt.Errorf("%s: image %q is not ztbank/<name>:<tag>", listFile, im.Image)
		}
		if seen[im.Name()] {
			return nil, fmt.Errorf("%s: %s listed twice", listFile, im.Name())
		}
		seen[im.Name()] = true
		switch im.Build {
		case "static", "spire":
		case "module":
			mod, version, ok := strings.Cut(im.Package, "@")
			_, tag, _ := strings.Cut(im.Image, ":")
			if !ok || mod == "" || "v"+tag != version || !strings.HasPrefix(im.Main, "./") {
				return nil, fmt.Errorf("%s: %s: a module build names module@version and a ./main package, with the tag the version without its v", listFile, im.Image)
			}
		case "rootfs":
			if im.Rootfs == "" {
				return nil, fmt.Errorf("%s: %s needs a rootfs recipe", listFile, im.Image)
			}
		default:
			return nil, fmt.Errorf("%s: %s: unknown build %q", listFile, im.Image, im.Build)
		}
	}
	return list.Images, nil
}

// passwd and group name root and the one non-root user, so tools that look a uid up by name
// (and Go's os/user) find it; the shell is nologin because there is none.
var (
	passwdFile = []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
		fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonrootUID, nonrootGID))
	groupFile = []byte("root:x:0:\n" + fmt.Sprintf("nonroot:x:%d:\n", nonrootGID))
)

// mozillaDir holds Debian's copy of the Mozilla CA list (package ca-certificates). The bundle
// is built from it rather than taken from /etc/ssl/certs, which also holds whatever CAs this
// host added locally: those must not become trusted inside the images.
const mozillaDir = "/usr/share/ca-certificates/mozilla"

func caBundle() ([]byte, error) {
	names, err := filepath.Glob(filepath.Join(mozillaDir, "*.crt"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no CA certificates in %s (apt-get install ca-certificates)", mozillaDir)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		buf.Write(bytes.TrimSpace(b))
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// baseEntries is the minimal root every image gets: /etc/passwd and /etc/group, the CA
// bundle where Go and OpenSSL look for it, and a sticky /tmp (read-only unless mounted).
func baseEntries(ca []byte) []entry {
	return []entry{
		{Path: "/etc/passwd", Mode: 0o644, Data: passwdFile},
		{Path: "/etc/group", Mode: 0o644, Data: groupFile},
		{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Data: ca},
		{Path: "/tmp", Dir: true, Mode: 0o777 | fs.ModeSticky},
	}
}

func ownedDir(p string) entry {
	return entry{Path: p, Dir: true, Mode: 0o755, UID: nonrootUID, GID: nonrootGID}
}

// layoutFor describes one image, given its built binary.
func layoutFor(root string, im image, binary string, ca []byte) (*layout, error) {
	user := fmt.Sprintf("%d:%d", nonrootUID, nonrootGID)
	labels := map[string]string{"org.opencontainers.image.title": im.Name()}
	bin := entry{Path: im.BinaryPath(), Mode: 0o755, Src: binary} // root-owned: the user cannot replace it
	switch im.Build {
	case "static":
		entries := append(baseEntries(ca), bin, ownedDir("/home/nonroot"))
		for _, d := range im.Dirs {
			entries = append(entries, ownedDir(d))
		}
		return &layout{Entries: entries, Config: config{
			User:       user,
			WorkingDir: "/home/nonroot",
			Entrypoint: []string{im.BinaryPath()},
			Labels:     labels,
		}}, nil
	case "spire":
		// Upstream's layout (SPIRE's Dockerfile): binaries in /opt/spire/bin, WORKDIR
		// /opt/spire, and the directories SPIRE reads, writes and creates by default owned by
		// the image's user. /run/spire/data and /run/spire/sockets are the data and socket
		// directories of our compose configuration, owned too so named volumes inherit it.
		role := strings.TrimPrefix(im.Name(), "spire-") // server or agent
		entries := append(baseEntries(ca), bin,
			ownedDir("/etc/spire/"+role),
			ownedDir("/var/lib/spire/"+role),
			ownedDir("/run/spire/data"),
			ownedDir("/run/spire/sockets"),
		)
		if role == "server" {
			entries = append(entries, ownedDir("/run/spire/server/private"), ownedDir("/tmp/spire-server/private"))
		} else {
			entries = append(entries, ownedDir("/run/spire/agent/public"), ownedDir("/tmp/spire-agent/public"))
		}
		return &layout{Entries: entries, Config: config{
			User:       user,
			WorkingDir: "/opt/spire",
			Entrypoint: []string{im.BinaryPath(), "run"},
			Cmd:        []string{},
			Labels:     labels,
		}}, nil
	case "module":
		// A third-party controller (spire-controller-manager), laid out as upstream's image:
		// the binary at the root, WORKDIR /, CMD []; but non-root, where upstream leaves
		// USER commented out.
		return &layout{Entries: append(baseEntries(ca), bin), Config: config{
			User:       user,
			WorkingDir: "/",
			Entrypoint: []string{im.BinaryPath()},
			Cmd:        []string{},
			Labels:     labels,
		}}, nil
	case "rootfs":
		entries := []entry{bin}
		if im.Layout != "" {
			extra, err := folderEntries(filepath.Join(root, im.Layout))
			if err != nil {
				return nil, err
			}
			entries = append(entries, extra...)
		}
		// The Debian postgres user, pinned to 999:999 by the rootfs recipe.
		return &layout{Entries: entries, Config: config{
			User:        "999:999",
			WorkingDir:  "/var/lib/postgresql",
			Entrypoint:  []string{im.BinaryPath()},
			Env:         []string{"PATH=/usr/local/bin:/usr/lib/postgresql/15/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"},
			Healthcheck: []string{im.BinaryPath(), "healthcheck"},
			Labels:      labels,
		}}, nil
	}
	return nil, fmt.Errorf("unknown build %q", im.Build)
}

// folderEntries lists a layout folder's files as root-owned entries at the same paths in the
// image (modes 0755 for executables, 0644 otherwise).
func folderEntries(dir string) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if st.Mode().Perm()&0o111 != 0 {
			mode = 0o755
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, entry{Path: "/" + filepath.ToSlash(rel), Mode: mode, Data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read layout folder: %w", err)
	}
	return out, nil
}
