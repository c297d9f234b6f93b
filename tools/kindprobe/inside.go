package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// check is one requirement of a kind node, tested inside the probe container.
type check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// inside performs the checks; every one is what a kind node's own processes do at start
// (its entrypoint, containerd's overlayfs snapshotter, the kubelet, kube-proxy).
func inside() []check {
	scratch := "/mnt"
	return []check{
		checked("root in the container", rootCheck()),
		checked("/sys/fs/cgroup writable (kubelet creates pod cgroups)", cgroupWritable()),
		checked("mount a fresh cgroup hierarchy", freshCgroup(filepath.Join(scratch, "cg"))),
		checked("mount tmpfs", syscall.Mount("tmpfs", mkdir(scratch, "tmp"), "tmpfs", 0, "")),
		checked("mount overlay (containerd snapshotter)", overlay(filepath.Join(scratch, "ovl"))),
		checked("open /dev/kmsg (kubelet OOM watcher)", openKmsg()),
		checked("write /proc/sys (kube-proxy sysctls)", os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)),
	}
}

func checked(name string, err error) check {
	if err != nil {
		return check{Name: name, Detail: err.Error()}
	}
	return check{Name: name, OK: true, Detail: "works"}
}

func mkdir(parts ...string) string {
	p := filepath.Join(parts...)
	_ = os.MkdirAll(p, 0o755)
	return p
}

func rootCheck() error {
	if uid := os.Getuid(); uid != 0 {
		return fmt.Errorf("uid %d", uid)
	}
	return nil
}

// cgroupWritable makes and removes a child group where the container's own hierarchy is
// mounted: the memory controller on cgroup v1, the unified root on v2.
func cgroupWritable() error {
	dir := "/sys/fs/cgroup/memory"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir = "/sys/fs/cgroup" // cgroup v2
	}
	child := filepath.Join(dir, "kindprobe")
	if err := os.Mkdir(child, 0o755); err != nil {
		return err
	}
	return os.Remove(child)
}

func freshCgroup(at string) error {
	mkdir(at)
	err := syscall.Mount("cgroup2", at, "cgroup2", 0, "")
	if err != nil {
		err = syscall.Mount("cgroup", at, "cgroup", 0, "memory")
	}
	if err != nil {
		return err
	}
	defer syscall.Unmount(at, 0)
	child := filepath.Join(at, "kindprobe")
	if err := os.Mkdir(child, 0o755); err != nil {
		return fmt.Errorf("mounted, but: %w", err)
	}
	return os.Remove(child)
}

func overlay(base string) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", mkdir(base, "l"), mkdir(base, "u"), mkdir(base, "w"))
	if err := syscall.Mount("overlay", mkdir(base, "m"), "overlay", 0, opts); err != nil {
		return err
	}
	return syscall.Unmount(filepath.Join(base, "m"), 0)
}

func openKmsg() error {
	f, err := os.Open("/dev/kmsg")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return errors.New("no /dev/kmsg")
		}
		return err
	}
	return f.Close()
}
