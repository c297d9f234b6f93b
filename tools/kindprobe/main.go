// Command kindprobe answers, in a few seconds, whether this Docker Engine can host kind
// nodes: kind starts every node with `docker run --privileged`, and the node's kubelet and
// containerd need a writable cgroup hierarchy, mount(2) for tmpfs and overlay, and /dev/kmsg.
//
//	kindprobe [-o report.md]   build a tiny probe image, run it the way kind would and the
//	                           closest way this engine allows, and report each check
//	kindprobe inside           (run inside the probe container) perform the checks
//
// It exits 0 when kind can run here and 1 (with the report) when it cannot, so `make
// kind-probe` stops the kind path with the evidence instead of a confusing kind failure.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ztbank/ztbank/libs/cli"
)

func main() { cli.Main("kindprobe", run) }

// errCannotRun is returned (after the report is printed) when kind cannot run here.
var errCannotRun = errors.New("kind cannot run on this Docker Engine (see the report above)")

const image = "ztbank/kindprobe:dev"

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "inside" {
		return json.NewEncoder(stdout).Encode(inside())
	}
	fs := flag.NewFlagSet("kindprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "also write the report (Markdown) to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := docker(ctx, nil, "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("no Docker Engine reachable: %w", err)
	}
	if err := buildImage(ctx); err != nil {
		return err
	}
	report := probe(ctx)
	text := report.markdown()
	fmt.Fprint(stdout, text)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if !report.kindCanRun() {
		return errCannotRun
	}
	return nil
}

// buildImage puts this very binary (static: CGO_ENABLED=0) into a scratch image; the engine
// has no registry, so there is no base image to pull.
func buildImage(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "kindprobe")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bin, err := os.ReadFile(self)
	if err != nil {
		return fmt.Errorf("read own binary: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kindprobe"), bin, 0o755); err != nil {
		return err
	}
	dockerfile := "FROM scratch\nCOPY kindprobe /kindprobe\nENTRYPOINT [\"/kindprobe\", \"inside\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	if err := docker(ctx, nil, "build", "-q", "-t", image, dir); err != nil {
		return fmt.Errorf("build probe image: %w", err)
	}
	return nil
}

// variant is one way of starting the node container.
type variant struct {
	Name  string
	Flags []string
}

// variants: exactly what kind does, then the most this engine may allow without
// --privileged (every capability the engine itself holds, no seccomp filter, own cgroup
// namespace, /dev/kmsg), to tell "kind as shipped" apart from "a node could run at all".
func variants(missing []string) []variant {
	near := []string{"--user", "0:0", "--cap-add", "ALL"}
	for _, c := range missing {
		near = append(near, "--cap-drop", c)
	}
	near = append(near, "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--cgroupns", "private", "--device", "/dev/kmsg", "--tmpfs", "/mnt")
	return []variant{
		{"kind's own flags (--privileged)", []string{"--privileged", "--user", "0:0", "--tmpfs", "/mnt"}},
		{"all capabilities the engine holds, no seccomp, private cgroupns", near},
	}
}

// result is what one variant showed.
type result struct {
	Variant variant
	Started bool
	Error   string // why the container did not start
	Checks  []check
}

type report struct {
	Engine   string
	Host     hostFacts
	Variants []result
}

func probe(ctx context.Context) report {
	var r report
	var v bytes.Buffer
	_ = docker(ctx, &v, "version", "--format", "{{.Server.Version}}, API {{.Server.APIVersion}}")
	var info bytes.Buffer
	_ = docker(ctx, &info, "info", "--format", "storage {{.Driver}}, cgroup {{.CgroupVersion}} ({{.CgroupDriver}})")
	r.Engine = strings.TrimSpace(v.String()) + "; " + strings.TrimSpace(info.String())
	r.Host = readHost()
	for _, vr := range variants(r.Host.MissingCaps) {
		res := result{Variant: vr}
		var out bytes.Buffer
		args := append([]string{"run", "--rm"}, vr.Flags...)
		args = append(args, image)
		if err := docker(ctx, &out, args...); err != nil {
			res.Error = oneLine(err.Error())
		} else {
			res.Started = true
			if err := json.Unmarshal(out.Bytes(), &res.Checks); err != nil {
				res.Error = "probe output: " + err.Error()
			}
		}
		r.Variants = append(r.Variants, res)
	}
	return r
}

// kindCanRun: kind always passes --privileged, so only the first variant counts.
func (r report) kindCanRun() bool {
	first := r.Variants[0]
	if !first.Started {
		return false
	}
	for _, c := range first.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

func (r report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# kind probe\n\nEngine: %s. Host (the engine's) capability bounding set %s",
		r.Engine, r.Host.CapBnd)
	if len(r.Host.MissingCaps) > 0 {
		fmt.Fprintf(&b, ", lacking %s", strings.Join(r.Host.MissingCaps, ", "))
	}
	b.WriteString(".\n\n")
	for _, res := range r.Variants {
		fmt.Fprintf(&b, "## %s\n\n`docker run %s`\n\n", res.Variant.Name, strings.Join(res.Variant.Flags, " "))
		if !res.Started {
			fmt.Fprintf(&b, "- container did not start: %s\n\n", res.Error)
			continue
		}
		for _, c := range res.Checks {
			mark := "ok"
			if !c.OK {
				mark = "FAILED"
			}
			fmt.Fprintf(&b, "- %s: %s (%s)\n", c.Name, mark, c.Detail)
		}
		b.WriteString("\n")
	}
	if r.kindCanRun() {
		b.WriteString("Verdict: kind can create nodes on this engine.\n")
	} else {
		b.WriteString("Verdict: kind cannot create nodes on this engine: it starts every node with `--privileged`, and the checks above show what that needs and what is refused.\n")
	}
	return b.String()
}

// hostFacts are read in this process: the engine shares the host's capability bounding set.
type hostFacts struct {
	CapBnd      string
	MissingCaps []string
}

// capNames are the capabilities --privileged asks for, by bit number (linux/capability.h).
var capNames = []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
	"SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
	"NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT",
	"SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE",
	"MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
	"CHECKPOINT_RESTORE"}

func readHost() hostFacts {
	var h hostFacts
	status, err := os.ReadFile("/proc/self/status")
	if err != nil || runtime.GOOS != "linux" {
		h.CapBnd = "unknown"
		return h
	}
	h.CapBnd, h.MissingCaps = parseCapBnd(string(status))
	return h
}

// parseCapBnd returns the CapBnd mask and the capability names it lacks.
func parseCapBnd(status string) (string, []string) {
	for _, line := range strings.Split(status, "\n") {
		hex, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		hex = strings.TrimSpace(hex)
		mask, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			return hex, nil
		}
		var missing []string
		for bit, name := range capNames {
			if mask&(1<<uint(bit)) == 0 {
				missing = append(missing, name)
			}
		}
		return hex, missing
	}
	return "unknown", nil
}

func docker(ctx context.Context, stdout io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return fmt.Errorf("docker %s: %w", args[0], err)
		}
		return fmt.Errorf("docker %s: %s", args[0], msg)
	}
	return nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	const max = 300
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
