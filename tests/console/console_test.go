// Package console runs the console (tools/console) against a real local stack in a real
// headless browser (Debian's chromium, driven over the DevTools protocol): the diagram shows
// every workload and allowed call of the topology, hovering a workload shows the routes and
// permissions its running service publishes, a request made through the edge appears in the
// decision stream within two seconds, a deny is marked as one, and nothing token-shaped
// reaches the page. It keeps a screenshot under .dev/console-test/.
package console

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/ztbank/ztbank/devkit/demo"
	"github.com/ztbank/ztbank/devkit/localspire"
	"github.com/ztbank/ztbank/tests/internal/teststack"
	"github.com/ztbank/ztbank/tools/console/web"
	"github.com/ztbank/ztbank/tools/devstack/stack"
)

var (
	flagScreenshot = flag.String("screenshot", "", "also write the screenshot here (make console-screenshot: docs/console.png)")
	flagChromium   = flag.String("chromium", "", "chromium binary (default: chromium or chromium-browser on PATH)")
)

// streamBudget is how soon a decision must be on the page after the request's response:
// the console polls the logs every web.Config.Poll (100 ms), so two seconds is twenty polls.
const streamBudget = 2 * time.Second

func chromiumPath() string {
	if *flagChromium != "" {
		return *flagChromium
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the local stack and a browser; skipped in -short mode")
	}
	browser := chromiumPath()
	if browser == "" {
		t.Skip("SKIPPED: no chromium on PATH; `make console-test` installs Debian's chromium (apt-get install chromium)")
	}
	root, err := localspire.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	artefacts := filepath.Join(root, ".dev", "console-test")
	if err := os.MkdirAll(artefacts, 0o755); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	stackStart := time.Now()
	st, err := teststack.Start(ctx, "ztcon", stack.Options{FrontDoor: true, Postgres: true, Progress: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	state := st.Dir
	t.Logf("stack ready in %s", time.Since(stackStart).Round(100*time.Millisecond))
	info := st.Info()

	token, err := web.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	cfg := web.FromStack(info, st.Topo, filepath.Join(root, "docs", "isolation-matrix.html"), token)
	cfg.OnBadLine = func(path string, err error) {
		t.Errorf("audit line refused by the console's parser: %s: %v", path, err)
	}
	consoleCtx, stopConsole := context.WithCancel(ctx)
	defer stopConsole()
	files := web.DefaultCertFiles(state)
	srv, err := web.Start(consoleCtx, cfg, "127.0.0.1:0", files)
	if err != nil {
		t.Fatal(err)
	}

	// The browser accepts exactly the console's key (SPKI pin) instead of skipping
	// certificate checks: a different server on that port would be refused.
	pin := spkiPin(t, files.Cert)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // root in CI containers; the page is our own
		chromedp.Flag("ignore-certificate-errors-spki-list", pin),
		chromedp.WindowSize(1500, 1300),
		chromedp.UserDataDir(filepath.Join(state, "chromium")),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()

	// Page load: from navigation (token in the URL, redirect, cookie) to the diagram drawn
	// and the event stream open.
	// The browser starts on its first action; it is not part of the page's load time.
	if err := chromedp.Do(bctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	loadStart := time.Now()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(srv.URL),
		chromedp.WaitVisible(chromedp.CSS(`body[data-diagram="ready"][data-stream="connected"]`)),
	); err != nil {
		t.Fatalf("load the console: %v", err)
	}
	finalURL, err := chromedp.Run(bctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	pageLoad := time.Since(loadStart)
	t.Logf("page load (navigate to diagram drawn and stream open): %s", pageLoad.Round(time.Millisecond))
	if strings.Contains(finalURL, "token") {
		t.Errorf("the token stayed in the address bar: %s", finalURL)
	}

	t.Run("diagram shows every workload and allowed call", func(t *testing.T) {
		for _, w := range st.Topo.Workloads {
			sel := fmt.Sprintf(`#diagram g.workload[data-workload=%q][data-spiffe-id=%q]`, w.Name, w.ID.String())
			if !visible(t, bctx, sel) {
				t.Errorf("workload %s (%s) is not drawn", w.Name, w.ID)
			}
		}
		for _, e := range st.Topo.Edges() {
			sel := fmt.Sprintf(`#diagram g.call[data-from=%q][data-to=%q] path`, e[0], e[1])
			if !visible(t, bctx, sel) {
				t.Errorf("allowed call %s -> %s is not drawn", e[0], e[1])
			}
		}
		calls := eval[int](t, bctx, `document.querySelectorAll("#diagram g.call").length`)
		if calls != len(st.Topo.Edges()) {
			t.Errorf("the diagram draws %d calls, the topology allows %d", calls, len(st.Topo.Edges()))
		}
	})

	t.Run("hover shows routes and permissions from the running service", func(t *testing.T) {
		err := chromedp.Do(bctx,
			chromedp.ScrollIntoView(chromedp.CSS(`#diagram g.workload[data-workload="bank-a/account"] rect`)),
			hover(`#diagram g.workload[data-workload="bank-a/account"] rect`),
			chromedp.WaitVisible(chromedp.CSS(`#workload-detail[data-workload="bank-a/account"] tr.route`)),
		)
		if err != nil {
			t.Fatal(err)
		}
		text := eval[string](t, bctx, `document.getElementById("workload-detail").textContent`)
		for _, want := range []string{"spiffe://ztbank.local/ns/bank-a/sa/account", "/v1/accounts/{accountID}", "accounts:read", "accounts:open", "only bank-a/user"} {
			if !strings.Contains(text, want) {
				t.Errorf("hover panel lacks %q:\n%s", want, text)
			}
		}
	})

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: st.EdgeTLS()}}
	loginCtx, cancelLogin := context.WithTimeout(ctx, 30*time.Second)
	tok, err := st.Login(loginCtx, client, "alice@bank-a")
	cancelLogin()
	if err != nil {
		t.Fatal(err)
	}
	alice := tok.AccessToken
	carol := demo.UserID("carol@bank-a")

	t.Run("an allowed request appears within two seconds", func(t *testing.T) {
		before := decisionIDs(t, bctx)
		status, _ := call(t, client, info.Edge.URL+"/bank-a/v1/users/me", alice)
		sent := time.Now()
		if status != http.StatusOK {
			t.Fatalf("GET /bank-a/v1/users/me as alice = %d", status)
		}
		js := fmt.Sprintf(`Array.from(document.querySelectorAll('#stream tr.decision.allow')).some(tr => !%s.includes(tr.dataset.decisionId) && tr.textContent.includes("GET /v1/users/me") && tr.dataset.userId.endsWith(%q))`,
			mustJSON(before), "/user/"+demo.UserID("alice@bank-a").String())
		waitTrue(t, bctx, js, streamBudget)
		t.Logf("time to first event (response received to row on the page): %s", time.Since(sent).Round(time.Millisecond))
	})

	t.Run("a deny appears marked as one", func(t *testing.T) {
		status, body := call(t, client, info.Edge.URL+"/bank-a/v1/users/"+carol.String(), alice)
		sent := time.Now()
		if status != http.StatusForbidden {
			t.Fatalf("alice reading carol's profile = %d, want 403", status)
		}
		var p struct {
			DecisionID string `json:"decision_id"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.DecisionID == "" {
			t.Fatalf("403 without a decision_id: %s", body)
		}
		sel := fmt.Sprintf(`#stream tr.decision[data-decision-id=%q]`, p.DecisionID)
		waitTrue(t, bctx, fmt.Sprintf(`document.querySelector(%s) !== null`, mustJSON(sel)), streamBudget)
		t.Logf("deny on the page %s after the response", time.Since(sent).Round(time.Millisecond))
		type row struct {
			Result, Class, Background, Text string
		}
		// The row's left edge colour is compared, not its background, which a new row
		// animates for a moment.
		got := eval[row](t, bctx, fmt.Sprintf(`(() => { const tr = document.querySelector(%s); return {Result: tr.dataset.result, Class: tr.className,
			Background: getComputedStyle(tr.cells[0]).borderLeftColor, Text: tr.querySelector("td.result").textContent}; })()`, mustJSON(sel)))
		allowBg := eval[string](t, bctx, `(() => { const tr = document.querySelector("#stream tr.decision.allow"); return tr ? getComputedStyle(tr.cells[0]).borderLeftColor : ""; })()`)
		if got.Result != "deny" || !strings.Contains(got.Class, "deny") || !strings.Contains(got.Text, "DENY") {
			t.Errorf("the deny row is not marked as one: %+v", got)
		}
		if got.Background == allowBg {
			t.Errorf("a deny looks like an allow: both rows are edged %s", got.Background)
		}

		// The filter for denies shows it and hides the allows.
		if err := chromedp.Do(bctx, chromedp.SetValue(chromedp.CSS(`#f-result`), "deny")); err != nil {
			t.Fatal(err)
		}
		eval[bool](t, bctx, `document.getElementById("f-result").dispatchEvent(new Event("input"))`)
		shown := eval[[]string](t, bctx, `Array.from(document.querySelectorAll("#stream tr.decision")).filter(tr => !tr.hidden).map(tr => tr.dataset.result)`)
		eval[bool](t, bctx, `(() => { const s = document.getElementById("f-result"); s.selectedIndex = 0; return s.dispatchEvent(new Event("input")); })()`)
		if len(shown) == 0 || strings.Contains(strings.Join(shown, ","), "allow") {
			t.Errorf("with the deny filter the page shows %v", shown)
		}
	})

	t.Run("no token or secret reaches the page", func(t *testing.T) {
		html := eval[string](t, bctx, `document.documentElement.outerHTML`)
		for _, secret := range []string{alice, token, "eyJ"} {
			if strings.Contains(html, secret) {
				t.Errorf("the page holds token material (%.12s…)", secret)
			}
		}
		matrixStatus, err := chromedp.Run(bctx, chromedp.Evaluate[int](`fetch("/matrix").then(r => r.status)`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if matrixStatus != http.StatusOK {
			t.Errorf("GET /matrix from the page = %d", matrixStatus)
		}
	})

	// The screenshot shows the hovered gateway's routes beside the diagram and the stream.
	if err := chromedp.Do(bctx,
		chromedp.ScrollIntoView(chromedp.CSS(`header`)),
		hover(`#diagram g.workload[data-workload="bank-a/user"] rect`),
		chromedp.WaitVisible(chromedp.CSS(`#workload-detail[data-workload="bank-a/user"] tr.route`)),
	); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artefacts, "console.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if *flagScreenshot != "" {
		if err := os.WriteFile(*flagScreenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stopConsole()
	if err := srv.Wait(); err != nil {
		t.Errorf("console: %v", err)
	}
}

// eval evaluates js in the page and returns its value.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// hover moves the mouse over the element's centre as a user would: a real input event, so
// the page's mouseenter handler runs.
func hover(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, target *chromedp.Target) (chromedp.Void, error) {
		js := fmt.Sprintf(`(() => { const r = document.querySelector(%s).getBoundingClientRect(); return [r.x + r.width/2, r.y + r.height/2]; })()`, mustJSON(sel))
		box, err := chromedp.Evaluate[[]float64](js)(ctx, target)
		if err != nil {
			return chromedp.Void{}, err
		}
		return chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, box[0], box[1])(ctx, target)
	}
}

// visible reports whether sel matches an element that takes up room on the page (a straight
// arrow is a box of zero width or height, so either extent counts).
func visible(t *testing.T, ctx context.Context, sel string) bool {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false; const r = e.getBoundingClientRect(); return r.width > 0 || r.height > 0; })()`, mustJSON(sel))
	return eval[bool](t, ctx, js)
}

func decisionIDs(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#stream tr.decision")).map(tr => tr.dataset.decisionId)`)
}

// waitTrue polls js in the page until it is true, failing after budget.
func waitTrue(t *testing.T, ctx context.Context, js string, budget time.Duration) {
	t.Helper()
	ok, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(budget)))
	if err != nil || !ok {
		t.Fatalf("not on the page within %s: %v\n%s", budget, err, js)
	}
}

func spkiPin(t *testing.T, certFile string) string {
	t.Helper()
	b, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s holds no PEM certificate", certFile)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

func call(t *testing.T, client *http.Client, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// testWriter sends the stack's progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
