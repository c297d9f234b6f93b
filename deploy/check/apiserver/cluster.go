// Package apiserver runs a real etcd and kube-apiserver (built by `make kube-tools` from the
// Go module proxy, see tools/kube) on loopback and applies the rendered overlays to it the way
// a cluster would receive them: server-side apply with strict field validation, the real
// CRDs installed, Pod Security admission enforced from the namespace labels, and the RBAC
// the rendering grants asked of the real authorizer. No scheduler, controller manager or
// kubelet runs: objects are admitted and stored, nothing is started.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Config says where the binaries are and how long the cluster may take to become ready.
type Config struct {
	// BinDir holds kube-apiserver and etcd (.dev/bin after `make kube-tools`).
	BinDir string
	// Dir is where certificates, etcd's data and the logs go (a t.TempDir()).
	Dir string
	// ReadyTimeout bounds the wait for /readyz. A cold kube-apiserver on an idle laptop is
	// ready in a few seconds; the bound is for a loaded 2-core CI machine.
	ReadyTimeout time.Duration
}

// Cluster is a running etcd + kube-apiserver pair.
type Cluster struct {
	// Rest is the admin client configuration (client certificate in group system:masters).
	Rest *rest.Config
	// APIServerLog and EtcdLog are the processes' combined output, for failure messages.
	APIServerLog, EtcdLog string

	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done is closed
}

// serviceCIDR is the Service IP range the API server allocates ClusterIPs from. Nothing is
// ever routed to it: no kube-proxy runs, the addresses only exist in stored objects.
const serviceCIDR = "10.96.0.0/16"

// Start launches etcd and kube-apiserver and returns once /readyz answers ok. On error every
// process it started is stopped again.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s not built (run `make kube-tools`): %w", b, err)
		}
	}
	// The ports are picked free and then released (freePorts); another process on this shared
	// machine can take one in between. That shows as "address already in use" in a log, and
	// only that is retried, in a fresh directory with fresh ports.
	const attempts = 3
	var err error
	for i := range attempts {
		attempt := cfg
		attempt.Dir = filepath.Join(cfg.Dir, fmt.Sprintf("attempt-%d", i))
		if err = os.MkdirAll(attempt.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("cluster directory: %w", err)
		}
		var c *Cluster
		c, err = startOnce(ctx, attempt)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
	return nil, err
}

// errPortTaken marks a start that failed because a picked port was taken meanwhile.
var errPortTaken = errors.New("a picked loopback port was taken")

func startOnce(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	p, err := newPKI(cfg.Dir, net.IPv4(10, 96, 0, 1))
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		APIServerLog: filepath.Join(cfg.Dir, "kube-apiserver.log"),
		EtcdLog:      filepath.Join(cfg.Dir, "etcd.log"),
	}
	defer func() {
		if err != nil {
			// Nothing to shut down gracefully in a cluster that never became ready.
			c.stop(0)
		}
	}()
	ports, err := pickPorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.spawn("etcd", filepath.Join(cfg.BinDir, "etcd"), c.EtcdLog,
		"--name=test",
		"--data-dir="+filepath.Join(cfg.Dir, "etcd-data"),
		"--listen-client-urls="+etcdURL,
		"--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=test="+peerURL,
		"--cert-file="+p.EtcdCert, "--key-file="+p.EtcdKey,
		"--trusted-ca-file="+p.CA, "--client-cert-auth",
		// A throwaway store: fsync per write only slows the test on a shared disk.
		"--unsafe-no-fsync",
		"--log-level=warn",
	); err != nil {
		return nil, err
	}
	apiPort := ports[2]
	if err := c.spawn("kube-apiserver", filepath.Join(cfg.BinDir, "kube-apiserver"), c.APIServerLog,
		"--etcd-servers="+etcdURL,
		"--etcd-cafile="+p.CA, "--etcd-certfile="+p.EtcdClientCert, "--etcd-keyfile="+p.EtcdClientKey,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+filepath.Join(cfg.Dir, "apiserver-certs"),
		"--tls-cert-file="+p.ServingCert, "--tls-private-key-file="+p.ServingKey,
		"--client-ca-file="+p.CA,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.ServiceAccountPub,
		"--service-account-signing-key-file="+p.ServiceAccountKey,
		"--service-cluster-ip-range="+serviceCIDR,
		"--authorization-mode=Node,RBAC",
		// kind and EKS run with privileged containers allowed cluster-wide (the SPIFFE CSI
		// driver needs one); Pod Security admission decides per namespace.
		"--allow-privileged=true",
		// The default admission plugins stay as shipped: PodSecurity, ServiceAccount and
		// NamespaceLifecycle among them are what the test relies on.
		"--anonymous-auth=false",
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	c.Rest = &rest.Config{
		Host: "https://127.0.0.1:" + strconv.Itoa(apiPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: p.CA, CertFile: p.AdminCert, KeyFile: p.AdminKey,
		},
		// Applying ~100 objects and ~20 pods is a burst; client-side throttling would only
		// slow the test down.
		QPS: 200, Burst: 400,
	}
	if err := c.waitReady(ctx, cfg.ReadyTimeout); err != nil {
		return nil, err
	}
	return c, nil
}

// waitReady polls /readyz until it answers ok, a process exits, or the timeout passes.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	cs, err := kubernetes.NewForConfig(c.Rest)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, p := range c.procs {
			select {
			case <-p.done:
				logs := c.Logs()
				if strings.Contains(logs, "address already in use") {
					return fmt.Errorf("%s exited: %w: %w\n%s", p.name, errPortTaken, p.err, logs)
				}
				return fmt.Errorf("%s exited before the API server was ready: %w\n%s", p.name, p.err, logs)
			default:
			}
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (last: %v, %s): %w\n%s", timeout, last, body, ctx.Err(), c.Logs())
		case <-tick.C:
		}
	}
}

// Logs returns the tail of both processes' logs, for a failure message.
func (c *Cluster) Logs() string {
	var out string
	for _, f := range []string{c.EtcdLog, c.APIServerLog} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		const tail = 4000
		if len(b) > tail {
			b = b[len(b)-tail:]
		}
		out += fmt.Sprintf("--- %s (tail)\n%s\n", filepath.Base(f), b)
	}
	return out
}

func (c *Cluster) spawn(name, bin, logPath string, args ...string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	c.procs = append(c.procs, p)
	return nil
}

// Stop ends kube-apiserver, then etcd (SIGINT, then SIGKILL after a grace period), and
// waits for both to exit.
func (c *Cluster) Stop() {
	// kube-apiserver shuts down in about a second here; the bound is for a loaded machine.
	c.stop(15 * time.Second)
}

func (c *Cluster) stop(grace time.Duration) {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	c.procs = nil
}

// pickPorts is freePorts; a test replaces it to force a taken port.
var pickPorts = freePorts

// freePorts reserves n loopback ports by listening on port 0, then releases them for the
// processes to bind. Another process could take one in between; Start then fails with the
// bind error in the log rather than hanging.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a loopback port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
