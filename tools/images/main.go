// Command images builds every container image of the project on this machine, with no
// registry: Go binaries built on the host go into images imported from a tar we write
// (`docker import`), and PostgreSQL's image starts from a Debian root filesystem made by
// debootstrap. Each image carries a label with the hash of its inputs; an image whose label
// already matches is skipped, so a second run takes seconds.
//
//	images build [-force] [name ...]   build (or skip) the images of deploy/images/images.json
//	images list                        print the image names
//
// `make images` runs it from the repository root. See docs/adr/0900-images-built-here.md.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ztbank/ztbank/libs/cli"
)

func main() { cli.Main("images", run) }

const usage = "usage: images build [-force] [name ...] | images list"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		return errors.New(usage)
	}
	fset := flag.NewFlagSet(args[1], flag.ContinueOnError)
	fset.SetOutput(stderr)
	root := fset.String("root", ".", "repository root")
	force := fset.Bool("force", false, "rebuild even when an image's inputs label matches")
	if err := fset.Parse(args[2:]); err != nil {
		return err
	}
	list, err := loadList(*root)
	if err != nil {
		return err
	}
	switch args[1] {
	case "list":
		for _, im := range list {
			fmt.Fprintln(stdout, im.Image)
		}
		return nil
	case "build":
		b := &builder{root: *root, getenv: getenv, out: stdout, errOut: stderr, force: *force}
		return b.build(ctx, selectImages(list, fset.Args()))
	}
	return errors.New(usage)
}

func selectImages(list []image, names []string) []image {
	if len(names) == 0 {
		var out []image
		for _, im := range list {
			if !im.Optional {
				out = append(out, im)
			}
		}
		return out
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []image
	for _, im := range list {
		if want[im.Name()] || want[im.Image] {
			out = append(out, im)
		}
	}
	return out
}

type builder struct {
	root        string
	getenv      func(string) string
	out, errOut io.Writer
	force       bool
	mu          sync.Mutex // guards out and errOut while the builds run concurrently
}

// dir is the builder's working area under .dev (git-ignored, and kept out of every Docker
// build context by .dockerignore).
func (b *builder) dir(elem ...string) string {
	return filepath.Join(append([]string{b.root, ".dev", "images"}, elem...)...)
}

func (b *builder) build(ctx context.Context, list []image) error {
	if len(list) == 0 {
		return errors.New("no image selected")
	}
	if err := dockerReachable(ctx); err != nil {
		return err
	}
	unlock, err := b.lock()
	if err != nil {
		return err
	}
	defer unlock()
	sumCache = loadSums(b.dir("sums.json"))
	defer saveSums(b.dir("sums.json"), sumCache)
	start := time.Now()
	// A root filesystem (debootstrap: mostly network and disk) is made while the binaries
	// compile (mostly CPU), which shortens a cold run by the shorter of the two.
	type rootfsResult struct {
		tarball, sum string
		err          error
	}
	rootfsDone := map[string]chan rootfsResult{}
	for _, im := range list {
		if im.Build == "rootfs" {
			ch := make(chan rootfsResult, 1)
			rootfsDone[im.Name()] = ch
			go func() {
				t, s, err := b.rootfs(ctx, im)
				ch <- rootfsResult{t, s, err}
			}()
		}
	}
	binaries, err := b.buildBinaries(ctx, list)
	if err != nil {
		for _, ch := range rootfsDone {
			<-ch // leave no recipe running behind us
		}
		return err
	}
	ca, err := caBundle()
	if err != nil {
		return err
	}
	for _, im := range list {
		t0 := time.Now()
		l, err := layoutFor(b.root, im, binaries[im.Name()], ca)
		if err != nil {
			return fmt.Errorf("%s: %w", im.Image, err)
		}
		if im.Build == "rootfs" {
			r := <-rootfsDone[im.Name()]
			if r.err != nil {
				return fmt.Errorf("%s: %w", im.Image, r.err)
			}
			l.Base, l.BaseSum = r.tarball, r.sum
		}
		sum, err := l.hash()
		if err != nil {
			return fmt.Errorf("%s: %w", im.Image, err)
		}
		current, oldID := imageLabel(ctx, im.Image, inputsLabel)
		if current == sum && !b.force {
			fmt.Fprintf(b.out, "    %-28s up to date (%s)\n", im.Image, short(sum))
			continue
		}
		l.Config.Labels[inputsLabel] = sum
		if err := dockerImport(ctx, im.Image, l); err != nil {
			return fmt.Errorf("%s: %w", im.Image, err)
		}
		if oldID != "" {
			// The previous build is now untagged; drop it unless a container still uses it.
			_ = exec.CommandContext(ctx, "docker", "image", "rm", oldID).Run()
		}
		fmt.Fprintf(b.out, "    %-28s built in %s (%s)\n", im.Image, time.Since(t0).Round(100*time.Millisecond), short(sum))
	}
	fmt.Fprintf(b.out, "==> images ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// lock makes concurrent runs (several engineers, or make -j) take turns: they share the
// binaries folder, the rootfs work folder and the image names.
func (b *builder) lock() (func(), error) {
	if err := os.MkdirAll(b.dir(), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(b.dir(".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintln(b.out, "==> another `images build` is running; waiting for it")
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
	}
	return func() { f.Close() }, nil
}

func loadSums(name string) map[string]cachedSum {
	m := map[string]cachedSum{}
	if b, err := os.ReadFile(name); err == nil {
		_ = json.Unmarshal(b, &m) // a damaged cache is an empty one
	}
	return m
}

func saveSums(name string, m map[string]cachedSum) {
	if b, err := json.Marshal(m); err == nil {
		_ = os.WriteFile(name, b, 0o644)
	}
}

func short(sum string) string {
	return strings.TrimPrefix(sum, "sha256:")[:12]
}

// buildBinaries builds every selected image's binary and returns their host paths by image
// name. The go command decides what is stale, so an unchanged tree costs one up-to-date
// check per group. VCS stamping is off: a binary then depends on its sources only, and a
// commit elsewhere in the repository does not change every image's hash.
func (b *builder) buildBinaries(ctx context.Context, list []image) (map[string]string, error) {
	var static, spire []image
	paths := map[string]string{}
	type job struct {
		what, hint, dir string
		env, args       []string
		// pinned builds (SPIRE, a module at a version) have sources that cannot change
		// under a fixed go.mod/go.sum or version: their stamp file remembers the key of the
		// last build, and an equal key with the outputs present skips the go command.
		stamp, key string
		outputs    []string
	}
	var jobs []job
	for _, im := range list {
		switch im.Build {
		case "spire":
			spire = append(spire, im)
		case "module":
			// Built in the module's own directory of the module cache, with its own go.mod and
			// go.sum: nothing of it enters our modules' dependency graphs. (`go install
			// pkg@version` would do the same but asks the proxy for the version list, which
			// this proxy refuses.)
			src, err := b.moduleDir(ctx, im.Package)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", im.Image, err)
			}
			out, err := filepath.Abs(b.dir("module", im.Binary()))
			if err != nil {
				return nil, err
			}
			paths[im.Name()] = out
			j := job{what: im.Package + " " + im.Main + " (CGO_ENABLED=0)", dir: src,
				env:   []string{"CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=readonly"},
				args:  []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, im.Main},
				stamp: out + ".stamp", outputs: []string{out}}
			jobs = append(jobs, j)
		default:
			static = append(static, im)
		}
	}
	if len(static) > 0 {
		out := b.dir("bin")
		args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out + string(filepath.Separator)}
		for _, im := range static {
			args = append(args, im.Package)
			paths[im.Name()] = filepath.Join(out, im.Binary())
		}
		jobs = append(jobs, job{what: fmt.Sprintf("%d Go binaries (CGO_ENABLED=0)", len(static)), dir: b.root, env: []string{"CGO_ENABLED=0"}, args: args})
	}
	if len(spire) > 0 {
		version, err := spireVersion(b.root)
		if err != nil {
			return nil, err
		}
		out, err := filepath.Abs(b.dir("spire"))
		if err != nil {
			return nil, err
		}
		for _, im := range spire {
			if _, tag, _ := strings.Cut(im.Image, ":"); tag != version {
				return nil, fmt.Errorf("%s: tag differs from the SPIRE version tools/spire pins (%s)", im.Image, version)
			}
			paths[im.Name()] = filepath.Join(out, im.Binary())
		}
		// SPIRE server's sqlite datastore is cgo (mattn/go-sqlite3), and the image has no
		// libc: link statically. netgo and osusergo keep glibc's NSS (which a static binary
		// cannot load) out of name and user lookups; sqlite_omit_load_extension drops dlopen.
		// The agent is built the same way so both share one compile.
		args := []string{"build", "-trimpath", "-buildvcs=false",
			"-tags=netgo,osusergo,sqlite_omit_load_extension",
			"-ldflags=-s -w -X github.com/spiffe/spire/pkg/common/version.gittag=" + version +
				" -linkmode=external -extldflags=-static",
			"-o", out + string(filepath.Separator)}
		for _, im := range spire {
			args = append(args, im.Package)
		}
		j := job{what: "SPIRE " + version + " (static cgo)", hint: "; a first build takes many minutes",
			dir: filepath.Join(b.root, "tools", "spire"), env: []string{"CGO_ENABLED=1", "GOWORK=off"}, args: args,
			stamp: filepath.Join(out, ".stamp")}
		for _, im := range spire {
			j.outputs = append(j.outputs, paths[im.Name()])
		}
		jobs = append(jobs, j)
	}
	goVersion, err := b.goEnv(ctx, "GOVERSION")
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		j := &jobs[i]
		if j.stamp == "" {
			continue
		}
		h := sha256.New()
		fmt.Fprintf(h, "%s\n%q\n%q\n", goVersion, j.env, j.args)
		for _, f := range []string{"go.mod", "go.sum"} {
			if b, err := os.ReadFile(filepath.Join(j.dir, f)); err == nil {
				h.Write(b)
			}
		}
		j.key = hex.EncodeToString(h.Sum(nil))
	}
	// Both builds at once: warm, each is mostly the go command's up-to-date check, and the
	// wall time is the longer of the two rather than their sum.
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		if j.stamp != "" && stampMatches(j.stamp, j.key, j.outputs) {
			b.say("==> go build %s: up to date (pinned inputs unchanged)\n", j.what)
			continue
		}
		b.say("==> go build %s%s\n", j.what, j.hint)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = b.goBuild(ctx, j.dir, j.env, j.args)
			if errs[i] == nil && j.stamp != "" {
				errs[i] = os.WriteFile(j.stamp, []byte(j.key+"\n"), 0o644)
			}
			if errs[i] == nil {
				b.say("    %s: done in %s\n", j.what, time.Since(t0).Round(100*time.Millisecond))
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return paths, nil
}

// stampMatches reports whether a pinned build's last key equals key and its outputs exist.
func stampMatches(stamp, key string, outputs []string) bool {
	b, err := os.ReadFile(stamp)
	if err != nil || strings.TrimSpace(string(b)) != key {
		return false
	}
	for _, o := range outputs {
		if _, err := os.Stat(o); err != nil {
			return false
		}
	}
	return true
}

func (b *builder) goEnv(ctx context.Context, name string) (string, error) {
	out, err := exec.CommandContext(ctx, goCommand(b.getenv), "env", name).Output()
	if err != nil {
		return "", fmt.Errorf("go env %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// moduleDir downloads module@version (if needed) and returns its directory in the module
// cache.
func (b *builder) moduleDir(ctx context.Context, modVersion string) (string, error) {
	cmd := exec.CommandContext(ctx, goCommand(b.getenv), "mod", "download", "-json", modVersion)
	cmd.Dir = b.root
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %s: %w", modVersion, info.Error, errors.Join(err, jerr))
	}
	return info.Dir, nil
}

func (b *builder) goBuild(ctx context.Context, dir string, env, args []string) error {
	cmd := exec.CommandContext(ctx, goCommand(b.getenv), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if len(out) > 0 {
		b.mu.Lock()
		b.errOut.Write(out)
		b.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

func goCommand(getenv func(string) string) string {
	if g := getenv("GO"); g != "" {
		return g
	}
	return "go"
}

var spireRequire = regexp.MustCompile(`(?m)^\s*github\.com/spiffe/spire v(\S+)`)

// spireVersion is the SPIRE version tools/spire/go.mod pins.
func spireVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, "tools", "spire", "go.mod"))
	if err != nil {
		return "", fmt.Errorf("read SPIRE pin: %w", err)
	}
	m := spireRequire.FindSubmatch(b)
	if m == nil {
		return "", errors.New("tools/spire/go.mod does not require github.com/spiffe/spire")
	}
	return string(m[1]), nil
}

// rootfs returns the root filesystem tarball of a rootfs image, making it first when no
// tarball for the recipe's current content exists. The cache key is the recipe's hash; the
// tarball's own hash (recorded beside it) goes into the image's inputs.
func (b *builder) rootfs(ctx context.Context, im image) (tarball, sum string, err error) {
	recipe := filepath.Join(b.root, im.Rootfs)
	recipeSum, err := fileSum(recipe)
	if err != nil {
		return "", "", fmt.Errorf("rootfs recipe: %w", err)
	}
	dir := b.dir("rootfs")
	tarball = filepath.Join(dir, fmt.Sprintf("%s-%s.tar", im.Name(), recipeSum[:16]))
	if s, err := os.ReadFile(tarball + ".sha256"); err == nil {
		if _, err := os.Stat(tarball); err == nil {
			return tarball, strings.TrimSpace(string(s)), nil
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	logName := filepath.Join(dir, im.Name()+".log")
	b.say("==> making the %s root filesystem (%s; when the recipe changes, a few minutes; log %s)\n", im.Name(), im.Rootfs, logName)
	t0 := time.Now()
	log, err := os.Create(logName)
	if err != nil {
		return "", "", err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, "bash", recipe, tarball, filepath.Join(dir, im.Name()+"-work"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		b.say("%s", tail(logName, 30))
		return "", "", fmt.Errorf("rootfs recipe %s (log %s): %w", im.Rootfs, logName, err)
	}
	sum, err = fileSum(tarball)
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(tarball+".sha256", []byte(sum+"\n"), 0o644); err != nil {
		return "", "", err
	}
	// Older tarballs of this image (other recipe hashes) are dead weight.
	old, _ := filepath.Glob(filepath.Join(dir, im.Name()+"-*.tar*"))
	for _, o := range old {
		if o != tarball && o != tarball+".sha256" {
			os.Remove(o)
		}
	}
	b.say("    %s root filesystem ready in %s\n", im.Name(), time.Since(t0).Round(time.Second))
	return tarball, sum, nil
}

// say prints a progress line; goroutines share the output.
func (b *builder) say(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fmt.Fprintf(b.out, format, args...)
}

// tail returns the last n lines of a file, for a failure's context.
func tail(name string, n int) string {
	data, err := os.ReadFile(name)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
