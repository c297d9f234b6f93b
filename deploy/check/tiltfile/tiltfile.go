// Package tiltfile executes the repository's Tiltfile offline with go.starlark.net against
// recording stubs of Tilt's builtins, then checks what it asked for: every Dockerfile, path and
// kustomization it names exists, every image the kind overlay runs is built, every resource it
// configures or depends on exists, and SPIRE is ordered before the workloads.
package tiltfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ztbank/ztbank/deploy/check/manifest"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Run is one execution of a Tiltfile: everything it declared.
type Run struct {
	Root           string
	Contexts       []string
	Kustomizations []string
	// Objects are the objects passed to k8s_yaml, from the kustomize stub.
	Objects        []manifest.Object
	Images         []Image
	LocalResources []LocalResource
	K8sResources   []K8sResource
}

// Image is a docker_build (or docker_build_with_restart) call, or a custom_build (Command set,
// no Dockerfile).
type Image struct {
	Ref, Context, Dockerfile, Target string
	Syncs                            [][2]string
	Command                          string
	Deps                             []string
}

// LocalResource is a local_resource call.
type LocalResource struct {
	Name, Cmd, ServeCmd string
	Deps, ResourceDeps  []string
}

// K8sResource is a k8s_resource call.
type K8sResource struct {
	Workload, NewName string
	Objects           []string
	ResourceDeps      []string
	PortForwards      int
}

// Name is the resource's final name in Tilt.
func (r K8sResource) Name() string {
	if r.NewName != "" {
		return r.NewName
	}
	return r.Workload
}

// Exec runs the Tiltfile at root/Tiltfile (or src, when non-nil, in its place).
func Exec(root string, src []byte) (*Run, error) {
	if src == nil {
		b, err := os.ReadFile(filepath.Join(root, "Tiltfile"))
		if err != nil {
			return nil, fmt.Errorf("read Tiltfile: %w", err)
		}
		src = b
	}
	r := &Run{Root: root}
	thread := &starlark.Thread{
		Name: "Tiltfile",
		Load: func(_ *starlark.Thread, module string) (starlark.StringDict, error) {
			if module == "ext://restart_process" {
				return starlark.StringDict{
					"docker_build_with_restart": starlark.NewBuiltin("docker_build_with_restart", r.dockerBuild),
				}, nil
			}
			return nil, fmt.Errorf("load %q: no stub for this extension", module)
		},
	}
	predeclared := starlark.StringDict{
		"allow_k8s_contexts": starlark.NewBuiltin("allow_k8s_contexts", r.allowContexts),
		"kustomize":          starlark.NewBuiltin("kustomize", r.kustomize),
		"decode_yaml_stream": starlark.NewBuiltin("decode_yaml_stream", decodeYAMLStream),
		"k8s_yaml":           starlark.NewBuiltin("k8s_yaml", r.k8sYAML),
		"docker_build":       starlark.NewBuiltin("docker_build", r.dockerBuild),
		"custom_build":       starlark.NewBuiltin("custom_build", r.customBuild),
		"sync":               starlark.NewBuiltin("sync", syncStep),
		"run":                starlark.NewBuiltin("run", runStep),
		"local_resource":     starlark.NewBuiltin("local_resource", r.localResource),
		"k8s_resource":       starlark.NewBuiltin("k8s_resource", r.k8sResource),
		"port_forward":       starlark.NewBuiltin("port_forward", portForward),
	}
	opts := &syntax.FileOptions{TopLevelControl: true, While: true, Set: true, GlobalReassign: true}
	if _, err := starlark.ExecFileOptions(opts, thread, "Tiltfile", src, predeclared); err != nil {
		var ee *starlark.EvalError
		if ok := asEvalError(err, &ee); ok {
			return nil, fmt.Errorf("execute Tiltfile: %s", ee.Backtrace())
		}
		return nil, fmt.Errorf("execute Tiltfile: %w", err)
	}
	return r, nil
}

func asEvalError(err error, target **starlark.EvalError) bool {
	ee, ok := err.(*starlark.EvalError)
	if ok {
		*target = ee
	}
	return ok
}

func (r *Run) allowContexts(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ctxs starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "contexts", &ctxs); err != nil {
		return nil, err
	}
	r.Contexts = append(r.Contexts, stringsOf(ctxs)...)
	return starlark.None, nil
}

// kustomize builds the kustomization for real and returns it as a YAML stream, as Tilt does.
func (r *Run) kustomize(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pathToDir", &path); err != nil {
		return nil, err
	}
	r.Kustomizations = append(r.Kustomizations, path)
	objs, err := manifest.Build(filepath.Join(r.Root, path))
	if err != nil {
		return nil, err
	}
	var docs []string
	for _, o := range objs {
		docs = append(docs, string(o.JSON))
	}
	return yamlBlob(strings.Join(docs, "\n---\n")), nil
}

// yamlBlob is Tilt's Blob type: what kustomize() returns and k8s_yaml() accepts.
type yamlBlob string

func (y yamlBlob) String() string        { return string(y) }
func (y yamlBlob) Type() string          { return "blob" }
func (y yamlBlob) Freeze()               {}
func (y yamlBlob) Truth() starlark.Bool  { return len(y) > 0 }
func (y yamlBlob) Hash() (uint32, error) { return starlark.String(y).Hash() }

func (r *Run) k8sYAML(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "yaml", &v); err != nil {
		return nil, err
	}
	blob, ok := v.(yamlBlob)
	if !ok {
		return nil, fmt.Errorf("k8s_yaml: want the result of kustomize(), got %s", v.Type())
	}
	objs, err := manifest.Parse([]byte(blob))
	if err != nil {
		return nil, err
	}
	r.Objects = append(r.Objects, objs...)
	return starlark.None, nil
}

func decodeYAMLStream(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "yaml", &v); err != nil {
		return nil, err
	}
	text, ok := v.(yamlBlob)
	if !ok {
		if s, isStr := v.(starlark.String); isStr {
			text = yamlBlob(s)
		} else {
			return nil, fmt.Errorf("decode_yaml_stream: got %s", v.Type())
		}
	}
	objs, err := manifest.Parse([]byte(text))
	if err != nil {
		return nil, err
	}
	var out []starlark.Value
	for _, o := range objs {
		var m any
		if err := json.Unmarshal(o.JSON, &m); err != nil {
			return nil, err
		}
		out = append(out, toStarlark(m))
	}
	return starlark.NewList(out), nil
}

func toStarlark(v any) starlark.Value {
	switch x := v.(type) {
	case map[string]any:
		d := starlark.NewDict(len(x))
		for k, e := range x {
			_ = d.SetKey(starlark.String(k), toStarlark(e))
		}
		return d
	case []any:
		l := make([]starlark.Value, len(x))
		for i, e := range x {
			l[i] = toStarlark(e)
		}
		return starlark.NewList(l)
	case string:
		return starlark.String(x)
	case bool:
		return starlark.Bool(x)
	case float64:
		if x == float64(int64(x)) {
			return starlark.MakeInt64(int64(x))
		}
		return starlark.Float(x)
	default:
		return starlark.None
	}
}

// step is a live_update step (sync or run).
type step struct {
	kind     string
	src, dst string
}

func (s step) String() string        { return s.kind + "(" + s.src + ", " + s.dst + ")" }
func (s step) Type() string          { return "live_update_step" }
func (s step) Freeze()               {}
func (s step) Truth() starlark.Bool  { return true }
func (s step) Hash() (uint32, error) { return starlark.String(s.String()).Hash() }

func syncStep(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var src, dst string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "local_path", &src, "remote_path", &dst); err != nil {
		return nil, err
	}
	return step{"sync", src, dst}, nil
}

func runStep(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cmd string
	var trigger starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cmd", &cmd, "trigger?", &trigger); err != nil {
		return nil, err
	}
	return step{kind: "run", src: cmd}, nil
}

func portForward(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var local, container int
	var name, host, linkPath string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "local_port", &local, "container_port?", &container, "name?", &name, "link_path?", &linkPath, "host?", &host); err != nil {
		return nil, err
	}
	return starlark.String(fmt.Sprintf("%d:%d", local, container)), nil
}

func (r *Run) dockerBuild(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ref, context, dockerfile, target string
	var entrypoint, only, liveUpdate, ignore, buildArgs starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"ref", &ref, "context", &context, "dockerfile?", &dockerfile, "target?", &target,
		"entrypoint?", &entrypoint, "only?", &only, "live_update?", &liveUpdate,
		"ignore?", &ignore, "build_args?", &buildArgs); err != nil {
		return nil, err
	}
	if dockerfile == "" {
		dockerfile = filepath.Join(context, "Dockerfile")
	}
	img := Image{Ref: ref, Context: context, Dockerfile: dockerfile, Target: target}
	img.Syncs = syncsOf(liveUpdate)
	r.Images = append(r.Images, img)
	return starlark.None, nil
}

// syncsOf returns the sync steps of a live_update list (docker_build and custom_build alike).
func syncsOf(liveUpdate starlark.Value) [][2]string {
	var syncs [][2]string
	if l, ok := liveUpdate.(*starlark.List); ok {
		for i := 0; i < l.Len(); i++ {
			if s, ok := l.Index(i).(step); ok && s.kind == "sync" {
				syncs = append(syncs, [2]string{s.src, s.dst})
			}
		}
	}
	return syncs
}

func (r *Run) customBuild(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var ref string
	var command, deps, liveUpdate, tag, skipsPush, ignore starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"ref", &ref, "command", &command, "deps", &deps, "live_update?", &liveUpdate,
		"tag?", &tag, "disable_push?", &skipsPush, "ignore?", &ignore); err != nil {
		return nil, err
	}
	img := Image{Ref: ref, Command: stringOf(command), Deps: stringsOf(deps)}
	img.Syncs = syncsOf(liveUpdate)
	r.Images = append(r.Images, img)
	return starlark.None, nil
}

func (r *Run) localResource(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var cmd, serveCmd, deps, resourceDeps, labels, env starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"name", &name, "cmd?", &cmd, "deps?", &deps, "resource_deps?", &resourceDeps,
		"serve_cmd?", &serveCmd, "labels?", &labels, "env?", &env); err != nil {
		return nil, err
	}
	r.LocalResources = append(r.LocalResources, LocalResource{
		Name: name, Cmd: stringOf(cmd), ServeCmd: stringOf(serveCmd),
		Deps: stringsOf(deps), ResourceDeps: stringsOf(resourceDeps),
	})
	return starlark.None, nil
}

func (r *Run) k8sResource(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var workload, newName string
	var objects, resourceDeps, portForwards, labels starlark.Value
	if err := starlark.UnpackArgs(b.Name(), args, kwargs,
		"workload?", &workload, "new_name?", &newName, "port_forwards?", &portForwards,
		"resource_deps?", &resourceDeps, "objects?", &objects, "labels?", &labels); err != nil {
		return nil, err
	}
	r.K8sResources = append(r.K8sResources, K8sResource{
		Workload: workload, NewName: newName, Objects: stringsOf(objects),
		ResourceDeps: stringsOf(resourceDeps), PortForwards: len(stringsOf(portForwards)),
	})
	return starlark.None, nil
}

func stringOf(v starlark.Value) string {
	if s, ok := v.(starlark.String); ok {
		return string(s)
	}
	return ""
}

// stringsOf accepts a string or a list of strings (Tilt accepts both).
func stringsOf(v starlark.Value) []string {
	switch x := v.(type) {
	case starlark.String:
		return []string{string(x)}
	case *starlark.List:
		var out []string
		for i := 0; i < x.Len(); i++ {
			if s, ok := x.Index(i).(starlark.String); ok {
				out = append(out, string(s))
			}
		}
		return out
	}
	return nil
}
