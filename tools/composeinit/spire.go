package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ztbank/ztbank/devkit/atomicfile"
	"github.com/ztbank/ztbank/libs/topology"
)

// WorkloadLabel is the container label the docker workload attestor reads: its value is the
// topology workload name, and the registration entry for that workload selects on it. A
// container gets an identity only by carrying the label, never by its uid (every ztbank
// container runs as 65532).
const WorkloadLabel = "org.ztbank.workload"

// NodeAlias is the path of the SPIFFE ID the compose agent gets besides its one-off join
// token ID; workload entries hang off it, so re-running the step (a second `up`) neither
// needs the old token nor duplicates entries.
const NodeAlias = "/node/compose"

// Files the spire step writes for the agent.
const (
	bundleFile    = "bundle.pem"
	joinTokenFile = "join-token"
)

func spire(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("composeinit spire", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", envOr(getenv, "SPIRE_SERVER_SOCKET", "/run/spire/admin/api.sock"), "SPIRE server admin API `socket`")
	out := fs.String("out", envOr(getenv, "COMPOSEINIT_OUT", "/run/spire/bootstrap"), "`directory` for bundle.pem and join-token (the agent reads them)")
	wait := fs.Duration("wait", 2*time.Minute, "how long to wait for the server to answer")
	ttl := fs.Duration("svid-ttl", 0, "X509-SVID TTL of the workload entries (0: the server default)")
	topo, err := parseWithTopology(fs, args, getenv)
	if err != nil {
		return err
	}
	if err := requireDir(*out); err != nil {
		return err
	}
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("SPIRE server socket %s: %w", *socket, err)
	}
	defer conn.Close()

	bundle, err := waitBundle(ctx, bundlev1.NewBundleClient(conn), *wait)
	if err != nil {
		return err
	}
	var pemBytes []byte
	for _, a := range bundle.X509Authorities {
		pemBytes = append(pemBytes, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Asn1})...)
	}
	if len(pemBytes) == 0 {
		return errors.New("SPIRE server returned a bundle without X.509 authorities")
	}
	if err := atomicfile.Write(filepath.Join(*out, bundleFile), pemBytes, 0o644); err != nil {
		return err
	}

	td := topo.TrustDomain
	alias, err := spiffeid.FromPath(td, NodeAlias)
	if err != nil {
		return err
	}
	tok, err := agentv1.NewAgentClient(conn).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{
		Ttl: 600, AgentId: &types.SPIFFEID{TrustDomain: td.Name(), Path: alias.Path()}})
	if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	// 0644: the agent reads it as root without capabilities, which does not let it read
	// another user's 0600 file. Only this step and the agent mount the volume, and the token
	// is single-use and expires in ten minutes.
	if err := atomicfile.Write(filepath.Join(*out, joinTokenFile), []byte(tok.Value+"\n"), 0o644); err != nil {
		return err
	}

	entries := Entries(topo, alias, *ttl)
	resp, err := entryv1.NewEntryClient(conn).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
	if err != nil {
		return fmt.Errorf("create entries: %w", err)
	}
	var errs []error
	created := 0
	for i, r := range resp.Results {
		switch codes.Code(r.Status.GetCode()) {
		case codes.OK:
			created++
		case codes.AlreadyExists:
		default:
			errs = append(errs, fmt.Errorf("entry %s: %s", idString(entries[i].SpiffeId), r.Status.GetMessage()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "SPIRE: bundle and join token written to %s; %d workload entries (%d new) under %s\n",
		*out, len(entries), created, alias)
	return nil
}

// Entries returns one registration entry per workload the compose stack runs: parented to
// the compose node alias and selected by the workload's container label alone.
func Entries(topo *topology.Topology, parent spiffeid.ID, ttl time.Duration) []*types.Entry {
	var out []*types.Entry
	for _, w := range topo.Workloads {
		if w.External {
			continue // Emissary-ingress runs only in Kubernetes
		}
		out = append(out, &types.Entry{
			SpiffeId:    &types.SPIFFEID{TrustDomain: w.ID.TrustDomain().Name(), Path: w.ID.Path()},
			ParentId:    &types.SPIFFEID{TrustDomain: parent.TrustDomain().Name(), Path: parent.Path()},
			Selectors:   []*types.Selector{{Type: "docker", Value: "label:" + WorkloadLabel + ":" + w.Name}},
			X509SvidTtl: int32(ttl / time.Second),
		})
	}
	return out
}

func idString(id *types.SPIFFEID) string {
	return "spiffe://" + id.GetTrustDomain() + id.GetPath()
}

// waitBundle polls the server until it answers: the one-shot container starts as soon as
// the server container is healthy, and the admin socket may lag its health endpoint.
func waitBundle(ctx context.Context, c bundlev1.BundleClient, wait time.Duration) (*types.Bundle, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last error
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := c.GetBundle(callCtx, &bundlev1.GetBundleRequest{})
		callCancel()
		if err == nil {
			return b, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("SPIRE server did not answer within %s: %w", wait, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
