// Package dockerfile checks the per-binary Dockerfiles: multi-stage, a static build, a
// distroless or scratch final stage, a numeric non-root user, pinned base images, and a build
// path that exists in the workspace.
package dockerfile

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// Stage is one FROM ... AS ... section.
type Stage struct {
	Name, Image string
	Lines       []string
}

// Parse splits a Dockerfile into stages, joining continuation lines.
func Parse(b []byte) []Stage {
	var stages []Stage
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line = cur + line
		cur = ""
		f := strings.Fields(line)
		if strings.EqualFold(f[0], "FROM") {
			s := Stage{Image: f[1]}
			if len(f) >= 4 && strings.EqualFold(f[2], "AS") {
				s.Name = f[3]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].Lines = append(stages[len(stages)-1].Lines, line)
		}
	}
	return stages
}

var (
	goBuild     = regexp.MustCompile(`go build\b.*\s(\./\S+)\s*$`)
	numericUser = regexp.MustCompile(`(?i)^USER\s+([0-9]+)(:[0-9]+)?$`)
)

// Check returns the problems with one Dockerfile; pkgExists reports whether a ./path package
// directory exists (or is a design-fixed binary still being written).
func Check(name string, b []byte, pkgExists func(string) bool) []error {
	var errs []error
	stages := Parse(b)
	if len(stages) < 2 {
		return []error{fmt.Errorf("%s: want a multi-stage build, have %d stage(s)", name, len(stages))}
	}
	for _, s := range stages {
		tag := s.Image[strings.LastIndex(s.Image, "/")+1:]
		if !strings.Contains(s.Image, "@") && (!strings.Contains(tag, ":") || strings.HasSuffix(tag, ":latest")) && s.Image != "scratch" {
			errs = append(errs, fmt.Errorf("%s: base image %s is not pinned", name, s.Image))
		}
	}
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.Image, "gcr.io/distroless/") && final.Image != "scratch" {
		errs = append(errs, fmt.Errorf("%s: final stage %s is not distroless or scratch", name, final.Image))
	}
	if strings.Contains(final.Image, ":debug") {
		errs = append(errs, fmt.Errorf("%s: final stage %s has a shell", name, final.Image))
	}
	user := ""
	for _, l := range final.Lines {
		if m := numericUser.FindStringSubmatch(l); m != nil {
			user = m[1]
		} else if strings.HasPrefix(strings.ToUpper(l), "USER") {
			user = "non-numeric"
		}
	}
	if user == "" || user == "0" || user == "non-numeric" {
		errs = append(errs, fmt.Errorf("%s: final stage needs a numeric non-root USER, have %q", name, user))
	}
	static, built := false, false
	for _, s := range stages[:len(stages)-1] {
		for _, l := range s.Lines {
			if strings.Contains(l, "CGO_ENABLED=0") {
				static = true
			}
			if m := goBuild.FindStringSubmatch(l); m != nil {
				built = true
				if !pkgExists(m[1]) {
					errs = append(errs, fmt.Errorf("%s: builds %s, which does not exist", name, m[1]))
				}
			}
		}
	}
	if !static {
		errs = append(errs, fmt.Errorf("%s: the build does not set CGO_ENABLED=0 (static binary)", name))
	}
	if !built {
		errs = append(errs, fmt.Errorf("%s: no go build step", name))
	}
	return errs
}
