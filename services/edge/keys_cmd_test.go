package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ztbank/ztbank/services/edge/keys"
)

// TestKeysCommand: edge keys generates a document ahead and extends an existing one without
// touching its keys.
func TestKeysCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"edge", "keys", "-for", "72h", "-rotation", "24h"}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var doc keys.Doc
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Keys) != 3 {
		t.Fatalf("72h of 24h keys: %d keys", len(doc.Keys))
	}
	in := filepath.Join(t.TempDir(), "current.json")
	if err := os.WriteFile(in, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"edge", "keys", "-in", in, "-for", "96h", "-rotation", "24h"}, envOf(nil), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	var more keys.Doc
	if err := json.Unmarshal(out.Bytes(), &more); err != nil {
		t.Fatal(err)
	}
	// The old keys stay as they were; new ones continue the schedule (now moved on a little,
	// so 96h from it reaches a fifth activation).
	if len(more.Keys) != 5 || more.Keys[0].ID != doc.Keys[0].ID || more.Keys[2].ID != doc.Keys[2].ID ||
		!more.Keys[3].Activate.Equal(doc.Keys[2].Activate.Add(24*time.Hour)) {
		t.Errorf("extended document: %d keys, first %s (was %s)", len(more.Keys), more.Keys[0].ID, doc.Keys[0].ID)
	}
}
