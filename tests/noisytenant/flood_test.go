package noisytenant

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodEnv, when set, makes the test binary the flood process instead of running tests.
const floodEnv = "ZTBANK_NOISYTENANT_FLOOD"

// floodConfig is the flood process's first line on stdin.
type floodConfig struct {
	CA      []byte      `json:"ca"`
	Users   []floodUser `json:"users"`
	Clients int         `json:"clients"` // per user
	Rate    int         `json:"rate"`    // requests per second, all clients together
}

type floodUser struct {
	URL   string `json:"url"`
	Token string `json:"token"`
}

// flood is the parent's handle on the flood process. Its protocol is one command per line
// on stdin and one answer line on stdout: "on" starts the flood and answers "limited" once
// the edge has refused one of its requests, "count" answers the requests sent so far,
// "off" stops the flood and answers once every request it sent has been answered; at the
// end of stdin it writes the statuses it got (JSON) and exits.
type flood struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startFlood(t *testing.T, users []user) *flood {
	t.Helper()
	cfg := floodConfig{CA: edgeCA, Clients: floodClients, Rate: floodFactor * tenantRate}
	for _, u := range users {
		cfg.Users = append(cfg.Users, floodUser{URL: st.Edge.URL + u.path, Token: u.token})
	}
	line, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), floodEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the flood process: %v", err)
	}
	f := &flood{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		_ = in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	if _, err := fmt.Fprintf(in, "%s\n", line); err != nil {
		t.Fatal(err)
	}
	return f
}

// ask sends one command and returns the answer line.
func (f *flood) ask(t *testing.T, command string) string {
	t.Helper()
	if _, err := fmt.Fprintln(f.in, command); err != nil {
		t.Fatalf("flood %s: %v", command, err)
	}
	if !f.out.Scan() {
		t.Fatalf("flood %s: no answer (%v)", command, f.out.Err())
	}
	return f.out.Text()
}

func (f *flood) on(t *testing.T) {
	t.Helper()
	if a := f.ask(t, "on"); a != "limited" {
		t.Fatalf("flood on: %s: the limits are not in force", a)
	}
}

func (f *flood) off(t *testing.T) {
	t.Helper()
	if a := f.ask(t, "off"); a != "off" {
		t.Fatalf("flood off: %s", a)
	}
}

func (f *flood) count(t *testing.T) int64 {
	t.Helper()
	a := f.ask(t, "count")
	n, err := strconv.ParseInt(strings.TrimPrefix(a, "count "), 10, 64)
	if err != nil {
		t.Fatalf("flood count: %q", a)
	}
	return n
}

// floodResult is the flood process's last line: the statuses its requests got and the
// connections it opened (each one a TLS handshake at the edge).
type floodResult struct {
	Statuses    map[int]int64 `json:"statuses"`
	Connections int64         `json:"connections"`
}

// stop ends the flood process and returns what it saw.
func (f *flood) stop(t *testing.T) floodResult {
	t.Helper()
	if err := f.in.Close(); err != nil {
		t.Fatal(err)
	}
	var res floodResult
	if !f.out.Scan() || json.Unmarshal(f.out.Bytes(), &res) != nil {
		t.Fatalf("flood: no result (%q, %v)", f.out.Text(), f.out.Err())
	}
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("flood process: %v", err)
	}
	return res
}

// floodMain is the flood process: Clients goroutines per user send as fast as the shared
// schedule of Rate requests per second lets them, ignoring Retry-After, over keep-alive
// connections of their own.
func floodMain(stdin io.Reader, stdout, stderr io.Writer) int {
	in := bufio.NewScanner(stdin)
	in.Buffer(nil, 1<<20)
	var cfg floodConfig
	if !in.Scan() || json.Unmarshal(in.Bytes(), &cfg) != nil || cfg.Rate <= 0 {
		fmt.Fprintln(stderr, "flood: no configuration on stdin")
		return 2
	}
	client := newClient(cfg.CA)
	var (
		conns atomic.Int64
		trace = &httptrace.ClientTrace{GotConn: func(c httptrace.GotConnInfo) {
			if !c.Reused {
				conns.Add(1)
			}
		}}
		sent   atomic.Int64
		mu     sync.Mutex
		counts = map[int]int64{}
		stop   chan struct{}
		wg     sync.WaitGroup
	)
	for in.Scan() {
		switch in.Text() {
		case "on":
			stop = make(chan struct{})
			limited, once := make(chan struct{}), sync.Once{}
			schedule := time.NewTicker(time.Second / time.Duration(cfg.Rate))
			for _, u := range cfg.Users {
				for range cfg.Clients {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							case <-schedule.C:
							}
							status, _, err := call(httptrace.WithClientTrace(context.Background(), trace), client, u.URL, u.Token)
							if err != nil {
								continue
							}
							sent.Add(1)
							mu.Lock()
							counts[status]++
							mu.Unlock()
							if status == http.StatusTooManyRequests {
								once.Do(func() { close(limited) })
							}
						}
					})
				}
			}
			go func() { <-stop; schedule.Stop() }()
			select {
			case <-limited:
				fmt.Fprintln(stdout, "limited")
			case <-time.After(time.Minute):
				fmt.Fprintln(stdout, "never answered 429 in a minute")
			}
		case "count":
			fmt.Fprintln(stdout, "count", sent.Load())
		case "off":
			if stop != nil {
				close(stop)
				wg.Wait()
				stop = nil
			}
			fmt.Fprintln(stdout, "off")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	b, _ := json.Marshal(floodResult{Statuses: counts, Connections: conns.Load()})
	fmt.Fprintf(stdout, "%s\n", b)
	return 0
}
