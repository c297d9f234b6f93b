package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"time"
)

// dial opens one TCP connection and reports how that went. The isolation test runs it in a
// tenant container's network namespace to show which databases that container can reach.
func dial(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("composeinit dial", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 3*time.Second, "connect `timeout`")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: dial needs one HOST:PORT", errUsage)
	}
	d := net.Dialer{Timeout: *timeout}
	c, err := d.DialContext(ctx, "tcp", fs.Arg(0))
	if err != nil {
		return fmt.Errorf("dial %s: %w", fs.Arg(0), err)
	}
	fmt.Fprintf(stdout, "connected to %s from %s\n", c.RemoteAddr(), c.LocalAddr())
	return c.Close()
}
