package contract

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// composeFile is the part of a compose file the contract reads. YAML anchors and merge keys
// are resolved by the decoder.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]any            `yaml:"networks"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	Environment yamlv3.Node    `yaml:"environment"`
	Volumes     []yamlv3.Node  `yaml:"volumes"`
	Networks    yamlv3.Node    `yaml:"networks"`
	NetworkMode string         `yaml:"network_mode"`
	DependsOn   yamlv3.Node    `yaml:"depends_on"`
	Tmpfs       yamlv3.Node    `yaml:"tmpfs"`
	Other       map[string]any `yaml:",inline"`
}

// composeNet is one network a service joins, with the extra names it has there.
type composeNet struct {
	name    string
	aliases []string
}

var interpolation = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// interpolate replaces ${VAR:-default} with its default: the contract checks the file as it
// runs with nothing overridden.
func interpolate(s string) string {
	return interpolation.ReplaceAllStringFunc(s, func(m string) string {
		return interpolation.FindStringSubmatch(m)[2]
	})
}

// FromCompose reads a compose file. root is the directory bind mounts are relative to; dir is
// where named volumes are materialised.
func FromCompose(path, root, dir string) (*Rendering, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f composeFile
	if err := yamlv3.Unmarshal([]byte(interpolate(string(raw))), &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &Rendering{Name: "compose"}
	problem := func(svc, format string, args ...any) {
		r.Problems = append(r.Problems, "compose service "+svc+": "+fmt.Sprintf(format, args...))
	}
	names := make([]string, 0, len(f.Services))
	for n := range f.Services {
		names = append(names, n)
	}
	sort.Strings(names)

	nets := map[string][]composeNet{}
	byName := map[string]*Container{}
	for _, name := range names {
		s := f.Services[name]
		c := &Container{
			ID:        "compose service " + name,
			Namespace: "compose",
			Image:     s.Image,
			Binary:    binaryOf(s.Image),
			Env:       map[string]string{},
			Mounts:    map[string]string{},
			Ports:     map[string]int{},
		}
		env, err := composeEnv(s.Environment)
		if err != nil {
			return nil, fmt.Errorf("service %s: environment: %w", name, err)
		}
		for k, v := range env {
			c.Env[k] = v
			c.Set = append(c.Set, k)
		}
		sort.Strings(c.Set)

		named := map[string]string{} // mount path → host dir of a named volume (filled at run time)
		for _, v := range s.Volumes {
			src, dst, err := composeVolume(v)
			if err != nil {
				return nil, fmt.Errorf("service %s: %w", name, err)
			}
			switch {
			case strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/"):
				host := src
				if !filepath.IsAbs(host) {
					host = filepath.Join(root, src)
				}
				if _, err := os.Stat(host); err != nil {
					problem(name, "bind mount %s: %v", src, err)
				}
				c.Mounts[dst] = host
			case src == "":
				c.Mounts[dst] = filepath.Join(dir, "anon", name, dst)
				named[dst] = c.Mounts[dst]
			default:
				if _, ok := f.Volumes[src]; !ok {
					problem(name, "volume %s is not declared", src)
				}
				c.Mounts[dst] = filepath.Join(dir, "volumes", src)
				named[dst] = c.Mounts[dst]
			}
		}
		for _, t := range composeList(s.Tmpfs) {
			c.Mounts[t] = filepath.Join(dir, "tmpfs", name, t)
			named[t] = c.Mounts[t]
		}
		for m, host := range named {
			if err := writeFiles(host, nil); err != nil {
				return nil, err
			}
			// Named volumes are filled when the stack starts (composeinit writes keys,
			// certificates and passwords): a file the environment names under one is given
			// placeholder content here, so the loader can open it.
			for _, v := range env {
				for _, p := range pathsIn(v) {
					if rel, ok := strings.CutPrefix(p, m+"/"); ok {
						if err := writeFiles(host, map[string][]byte{rel: placeholder(rel)}); err != nil {
							return nil, err
						}
					}
				}
			}
		}

		switch {
		case strings.HasPrefix(s.NetworkMode, "service:"):
		case s.NetworkMode == "none" || s.NetworkMode == "host":
		default:
			ns, err := composeNetworks(s.Networks)
			if err != nil {
				return nil, fmt.Errorf("service %s: networks: %w", name, err)
			}
			if len(ns) == 0 {
				ns = []composeNet{{name: "default"}}
			}
			for _, n := range ns {
				if _, ok := f.Networks[n.name]; !ok && n.name != "default" {
					problem(name, "network %s is not declared", n.name)
				}
			}
			nets[name] = ns
		}
		for _, dep := range composeDeps(s.DependsOn) {
			if _, ok := f.Services[dep]; !ok {
				problem(name, "depends_on %s, which is not a service", dep)
			}
		}
		byName[name] = c
		r.Containers = append(r.Containers, c)
	}
	// A service in another's network namespace has that one's networks and loopback.
	owner := map[string]string{}
	for _, name := range names {
		owner[name] = name
		if o, ok := strings.CutPrefix(f.Services[name].NetworkMode, "service:"); ok {
			if _, exists := f.Services[o]; !exists {
				problem(name, "network_mode service:%s names no service", o)
				continue
			}
			owner[name] = o
		}
	}
	serviceOf := map[*Container]string{}
	for n, c := range byName {
		serviceOf[c] = n
	}

	r.Resolve = func(from *Container, host string, port int) ([]Target, error) {
		self := owner[serviceOf[from]]
		var out []Target
		if host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1" {
			for _, n := range names {
				if owner[n] == self {
					out = append(out, Target{C: byName[n], Port: port})
				}
			}
			return listening(out, host, port)
		}
		for _, n := range names {
			for _, tn := range nets[owner[n]] {
				if !slices.ContainsFunc(nets[self], func(fn composeNet) bool { return fn.name == tn.name }) {
					continue
				}
				if host == n || slices.Contains(tn.aliases, host) {
					// Everything sharing the target's network namespace answers there.
					for _, m := range names {
						if owner[m] == owner[n] {
							out = append(out, Target{C: byName[m], Port: port})
						}
					}
				}
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no compose service or alias %s on a network %s shares", host, serviceOf[from])
		}
		return listening(out, host, port)
	}
	return r, nil
}

// listening keeps the targets whose process listens on port (containers of ours report it
// from their loaded configuration; others are kept).
func listening(targets []Target, host string, port int) ([]Target, error) {
	var out []Target
	for _, t := range slices.Compact(targets) {
		if t.C.Binary == "" || t.C.loaded == nil || t.C.loaded.listens(port) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		var ids []string
		for _, t := range targets {
			ids = append(ids, t.C.ID)
		}
		return nil, fmt.Errorf("%s reaches %s, none of which listens on %d", host, strings.Join(ids, ", "), port)
	}
	return out, nil
}

var pathToken = regexp.MustCompile(`(?:^|[=\s,])(/[^\s,]+)`)

// pathsIn lists the absolute paths a variable's value names (a DSN names several).
func pathsIn(v string) []string {
	v = strings.TrimPrefix(v, "unix://")
	var out []string
	for _, m := range pathToken.FindAllStringSubmatch(v, -1) {
		out = append(out, m[1])
	}
	return out
}

func composeEnv(n yamlv3.Node) (map[string]string, error) {
	out := map[string]string{}
	switch n.Kind {
	case 0:
	case yamlv3.MappingNode:
		var m map[string]*string
		if err := n.Decode(&m); err != nil {
			return nil, err
		}
		for k, v := range m {
			if v != nil {
				out[k] = *v
			}
		}
	case yamlv3.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	default:
		return nil, fmt.Errorf("line %d: want a map or a list", n.Line)
	}
	return out, nil
}

func composeVolume(n yamlv3.Node) (src, dst string, err error) {
	if n.Kind == yamlv3.ScalarNode {
		parts := strings.Split(n.Value, ":")
		switch len(parts) {
		case 1:
			return "", parts[0], nil
		default:
			return parts[0], parts[1], nil
		}
	}
	var long struct {
		Source string `yaml:"source"`
		Target string `yaml:"target"`
	}
	if err := n.Decode(&long); err != nil {
		return "", "", fmt.Errorf("volume at line %d: %w", n.Line, err)
	}
	return long.Source, long.Target, nil
}

func composeNetworks(n yamlv3.Node) ([]composeNet, error) {
	var out []composeNet
	switch n.Kind {
	case 0:
	case yamlv3.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		for _, name := range l {
			out = append(out, composeNet{name: name})
		}
	case yamlv3.MappingNode:
		var m map[string]*struct {
			Aliases []string `yaml:"aliases"`
		}
		if err := n.Decode(&m); err != nil {
			return nil, err
		}
		for name, v := range m {
			cn := composeNet{name: name}
			if v != nil {
				cn.aliases = v.Aliases
			}
			out = append(out, cn)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

func composeDeps(n yamlv3.Node) []string {
	switch n.Kind {
	case yamlv3.SequenceNode:
		var l []string
		_ = n.Decode(&l)
		return l
	case yamlv3.MappingNode:
		var m map[string]any
		_ = n.Decode(&m)
		var out []string
		for k := range m {
			out = append(out, k)
		}
		return out
	}
	return nil
}

func composeList(n yamlv3.Node) []string {
	switch n.Kind {
	case yamlv3.ScalarNode:
		return []string{n.Value}
	case yamlv3.SequenceNode:
		var l []string
		_ = n.Decode(&l)
		return l
	}
	return nil
}
