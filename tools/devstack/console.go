package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/ztbank/ztbank/libs/topology"
	"github.com/ztbank/ztbank/tools/console/web"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

// consoleListen is where `make dev` serves the console; free-port runs take any port.
const consoleListen = "127.0.0.1:8444"

// startConsole serves the console (tools/console) for the stack until ctx is done and prints
// its URL with the one-time token. A console that cannot start (its port taken, say) is
// reported and the stack keeps running: the console is a view, not part of the platform.
func startConsole(ctx context.Context, root, state string, freePorts bool, info stack.Info, topo *topology.Topology, jaegerUI string, stdout io.Writer) {
	token, err := web.NewToken()
	if err != nil {
		fmt.Fprintf(stdout, "==> console not started: %v\n", err)
		return
	}
	cfg := web.FromStack(info, topo, filepath.Join(root, "docs", "isolation-matrix.html"), token)
	cfg.JaegerURL = jaegerUI
	listen := consoleListen
	if freePorts {
		listen = "127.0.0.1:0"
	}
	srv, err := web.Start(ctx, cfg, listen, web.DefaultCertFiles(state))
	if err != nil {
		fmt.Fprintf(stdout, "==> console not started: %v\n", err)
		return
	}
	ca := "the dev CA"
	if info.Edge != nil {
		ca = info.Edge.CAFile
	}
	fmt.Fprintf(stdout, "\nconsole:            %s\n                    (topology, live decisions, isolation matrix; trust %s to open it without a warning)\n", srv.URL, ca)
}
