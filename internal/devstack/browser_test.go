package devstack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/wsgateway/wsgateway/internal/apigw"
	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/poll"
	"github.com/wsgateway/wsgateway/web"
)

// TestBrowser drives the demo page and its client library in a real
// headless Chromium: against the devstack, and against servers that refuse
// it. With WSGATEWAY_SCREENSHOT=file.png it also writes a screenshot of the
// page with messages in it (make screenshot).
func TestBrowser(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	t.Run("demo page", func(t *testing.T) { testDemoPage(t, browser) })
	t.Run("refused connection", func(t *testing.T) { testRefusedConnection(t, browser) })
	t.Run("publisher auth", func(t *testing.T) { testAPIKeyField(t, browser) })
	t.Run("recovers what was published while away", func(t *testing.T) { testRecovery(t, browser, true) })
	t.Run("says what it could not recover", func(t *testing.T) { testRecovery(t, browser, false) })
	t.Run("subscriber count and user messages", func(t *testing.T) { testCountAndUser(t, browser) })
	t.Run("disconnected by the server", func(t *testing.T) { testServerDisconnect(t, browser) })
}

// testCountAndUser opens two pages of one user on a stack that enforces
// connect tokens and API keys: each page shows the topic's connections and
// distinct users (once its API key field has a key), follows an
// unsubscribe, and shows a message sent to its user as such: the counts
// tell connections from users only because both pages are alice's.
func testCountAndUser(t *testing.T, browser context.Context) {
	e := start(t, map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"CONNECT_TOKEN_SECRET": testSecret, "API_KEYS": "page-key",
	})
	const topic = "orders.eu"
	tokens := auth.NewTokens(testSecret, time.Now)
	var pages []*page
	for range 2 {
		tok, err := tokens.Mint("alice", []string{topic}, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		p := openPage(t, browser, e.http+"/?token="+tok)
		p.waitText("status", "connected")
		p.fill("topic-input", topic)
		p.click("subscribe-button")
		p.waitFor("the subscription shown as active", fmt.Sprintf(
			`document.querySelector('[data-testid="subscriptions"] li[data-topic=%q] .badge.ok') !== null`, topic))
		pages = append(pages, p)
	}
	a, b := pages[0], pages[1]

	// Counting is a publisher call: without the key it is refused, and the page says why.
	a.waitContains("subscriber-count", "enter an API key")
	for _, p := range pages {
		p.do(chromedp.SendKeys(testID("api-key-input"), "page-key"))
		p.waitText("subscriber-count", "On "+topic+": 2 connections · 1 user")
	}

	// b lets go; both pages follow, within a refresh or two.
	b.clickCSS(fmt.Sprintf(`[data-testid="subscriptions"] button[data-topic=%q]`, topic))
	b.waitText("subscriber-count", "On "+topic+": 1 connection · 1 user")
	a.waitText("subscriber-count", "On "+topic+": 1 connection · 1 user")

	// A message to alice reaches both her pages, subscribed to the topic or not.
	status, got := e.callREST(t, http.MethodPost, "/v1/users/alice:send", "page-key", `{"data":{"to":"alice"}}`)
	if status != http.StatusOK || got["delivered"] != 2.0 {
		t.Fatalf("send to alice = %d %v, want 200 with delivered 2: her two pages", status, got)
	}
	for _, p := range pages {
		p.waitContains("message-log", "to user alice")
		p.waitContains("message-log", `"to": "alice"`)
		p.noExceptions()
	}
}

// testServerDisconnect has a backend disconnect the page's connection: told
// it may reconnect, the page comes back and resubscribes; told not to, it
// shows the server's reason and stays away.
func testServerDisconnect(t *testing.T, browser context.Context) {
	e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
	// The page reaches the WebSocket API through a gate that counts its
	// connection attempts, failed ones included.
	gate := newGate(t, e.stack.WSAddr)
	pages := httptest.NewServer(web.Handler(web.Config{WebSocketURL: "ws://" + gate.addr() + "/"}))
	t.Cleanup(pages.Close)
	p := openPage(t, browser, pages.URL+"/")
	p.waitText("status", "connected")
	const topic = "orders.eu"
	p.fill("topic-input", topic)
	p.click("subscribe-button")
	first := e.awaitSoleSubscriber(t, topic, "")

	disconnect := func(id, body string) {
		t.Helper()
		status, got := e.callREST(t, http.MethodPost, "/v1/connections/"+id+":disconnect", "", body)
		if status != http.StatusOK || got["disconnected"] != 1.0 {
			t.Fatalf("disconnect %s %s = %d %v, want 200 with disconnected 1", id, body, status, got)
		}
	}

	disconnect(first, `{"reason":"rebalancing","reconnect":true}`)
	second := e.awaitSoleSubscriber(t, topic, first)
	p.waitText("status", "connected")
	e.restPublish(t, topic, `{"data":{"after":"rebalancing"}}`, http.StatusOK)
	p.waitContains("message-log", `"after": "rebalancing"`)

	attempts := gate.accepted.Load()
	disconnect(second, `{"reason":"account suspended","reconnect":false}`)
	p.waitContains("connection-error", "Disconnected by the server: account suspended")
	p.waitText("status", "closed by the server")
	// A retry would come within half a second: the client's first backoff
	// is at most 500 ms. Wait twice that by the page's own clock, from after
	// the disconnect was shown: timers fire in the order they fall due, so
	// however busy the machine, a retry timer the disconnect set has fired
	// by then, and the status below would no longer read closed. Then give a
	// socket it opened a moment to reach the gate.
	if _, err := chromedp.Run(p.ctx, chromedp.Evaluate[any](`new Promise((resolve) => setTimeout(resolve, 1000))`, chromedp.EvalAwaitPromise)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(250 * time.Millisecond)
	if n := gate.accepted.Load() - attempts; n != 0 {
		t.Errorf("the page made %d connection attempts after being told not to reconnect", n)
	}
	if ids := e.stack.Emulator.ConnectionIDs(); len(ids) != 0 {
		t.Errorf("open connections = %v, want none", ids)
	}
	if subs := e.subscribers(t, topic); len(subs) != 0 {
		t.Errorf("subscribers of %s = %v, want none", topic, subs)
	}
	if s := p.text("status"); s != "closed by the server" {
		t.Errorf("status %q after the disconnect, want closed by the server", s)
	}
	p.noExceptions()
}

// callREST calls the REST API with the API key, if any, and returns the
// status and the decoded JSON answer.
func (e *e2e) callREST(t *testing.T, method, path, key, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, e.http+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s answered %d %s: %v", method, path, resp.StatusCode, raw, err)
	}
	return resp.StatusCode, out
}

// testRecovery drops the page's connection from the server side and keeps
// the page away while a backend publishes. Once back, the page shows every
// message once, in order, and says they were recovered; or, on a stack that
// keeps no history, that the topic could not be recovered and needs a
// reload, and goes on with the messages after.
func testRecovery(t *testing.T, browser context.Context, history bool) {
	env := map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"}
	if !history {
		env["HISTORY_TTL"] = "0"
	}
	e := start(t, env)
	// The page reaches the WebSocket API through a gate the test can shut,
	// so that it is surely away while the messages are published: its
	// reconnect would otherwise race them.
	gate := newGate(t, e.stack.WSAddr)
	pages := httptest.NewServer(web.Handler(web.Config{WebSocketURL: "ws://" + gate.addr() + "/"}))
	t.Cleanup(pages.Close)
	p := openPage(t, browser, pages.URL+"/")
	p.waitText("status", "connected")

	const topic = "orders.eu"
	p.fill("topic-input", topic)
	p.click("subscribe-button")
	first := e.awaitSoleSubscriber(t, topic, "")
	publish := func(n, wantDelivered int) {
		t.Helper()
		got := e.restPublish(t, topic, fmt.Sprintf(`{"data":{"n":%d}}`, n), http.StatusOK)
		if got["delivered"] != float64(wantDelivered) {
			t.Fatalf("publish %d = %v, want delivered %d", n, got, wantDelivered)
		}
	}
	publish(1, 1)
	publish(2, 1)
	p.waitContains("message-log", `"n": 2`)

	gate.shut()
	e.deleteConnection(t, first)
	poll.Until(t, eventually, "the page's subscription gone with its connection", func() bool { return len(e.subscribers(t, topic)) == 0 })
	p.waitContains("status", "retrying in")
	for n := 3; n <= 5; n++ {
		publish(n, 0) // nobody is subscribed: only recovery can bring these
	}
	gate.open()

	e.awaitSoleSubscriber(t, topic, first)
	p.waitText("status", "connected")
	note := "3 messages recovered after reconnect"
	if !history {
		note = "Could not recover " + topic + ": reload"
	}
	p.waitContains("recovery-note", note)
	publish(6, 1)
	p.waitContains("message-log", `"n": 6`)

	// Newest first: each message once, in publish order, each with its offset.
	got, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-testid="message-log"] li')]
		.map((li) => li.querySelector(".offset")?.textContent + " " + li.querySelector("pre").textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for n := 6; n >= 1; n-- {
		if history || n < 3 || n > 5 {
			want = append(want, fmt.Sprintf(`#%d {"n": %d}`, n, n))
		}
	}
	if !slices.Equal(got, want) {
		gotJSON, _ := json.MarshalIndent(got, "", "  ")
		t.Errorf("message log =\n%s\nwant %q", gotJSON, want)
	}
	if s := p.text("recovery-note"); !strings.HasPrefix(s, note) || strings.Contains(s, " · ") {
		t.Errorf("recovery note %q, want only %q", s, note)
	}
	p.noExceptions()
}

// gate forwards TCP connections to a listener; while shut, it hangs up on
// new ones, as an unreachable network would, and keeps the open ones.
// accepted counts the connections it took, shut or not.
type gate struct {
	l        net.Listener
	shutNow  atomic.Bool
	accepted atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func newGate(t *testing.T, to string) *gate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{l: l, conns: map[net.Conn]struct{}{}}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			g.accepted.Add(1)
			if g.shutNow.Load() {
				c.Close()
				continue
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				g.forward(c, to)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		g.mu.Lock()
		for c := range g.conns {
			c.Close()
		}
		g.conns = nil
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *gate) addr() string { return g.l.Addr().String() }
func (g *gate) shut()        { g.shutNow.Store(true) }
func (g *gate) open()        { g.shutNow.Store(false) }

// forward copies both ways until either side ends, then closes both.
func (g *gate) forward(c net.Conn, to string) {
	b, err := net.Dial("tcp", to)
	if err != nil {
		c.Close()
		return
	}
	g.mu.Lock()
	if g.conns == nil { // the test is over
		g.mu.Unlock()
		c.Close()
		b.Close()
		return
	}
	g.conns[c], g.conns[b] = struct{}{}, struct{}{}
	g.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }()
	go func() { io.Copy(c, b); done <- struct{}{} }()
	<-done
	c.Close()
	b.Close()
	<-done
	g.mu.Lock()
	delete(g.conns, c) // a no-op on the nil map once the test is over
	delete(g.conns, b)
	g.mu.Unlock()
}

// testAPIKeyField publishes from the page on a stack with API_KEYS: refused
// without a key, through with one, which the tab keeps in sessionStorage
// (gone with the tab), never in localStorage.
func testAPIKeyField(t *testing.T, browser context.Context) {
	e := start(t, map[string]string{
		"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "API_KEYS": "page-key",
	})
	p := openPage(t, browser, e.http+"/")
	p.waitText("status", "connected")
	p.click("subscribe-button") // the default topic, demo
	p.waitFor("the subscription shown as active",
		`document.querySelector('[data-testid="subscriptions"] li[data-topic="demo"] .badge.ok') !== null`)
	// Above the publish form, the topic's count says it needs a key, in two
	// lines; a refresh after a key is typed makes it a count of one line,
	// which moves the form up. A click aims where the button is when the
	// click starts, so each click waits for the count it could race: a
	// click aimed before the move lands just below the button (on a busy
	// machine, the publish with the key never happened).
	p.waitContains("subscriber-count", "enter an API key")

	p.click("publish-button")
	p.waitContains("publish-result", "401")

	p.do(chromedp.SendKeys(testID("api-key-input"), "page-key"))
	p.waitContains("subscriber-count", "On demo: 1 connection")
	p.click("publish-button")
	p.waitContains("publish-result", "delivered 1")
	p.waitFor("the key kept for the tab only",
		`sessionStorage.getItem("wsgateway.apiKey") === "page-key" && !Object.values({...localStorage}).includes("page-key")`)
	p.noExceptions()
}

func testDemoPage(t *testing.T, browser context.Context) {
	e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
	p := openPage(t, browser, e.http+"/")
	p.waitText("status", "connected")

	const topic = "orders.eu"
	p.fill("topic-input", topic)
	p.click("subscribe-button")
	first := e.awaitSoleSubscriber(t, topic, "")
	p.waitFor("the subscription shown as active", fmt.Sprintf(
		`document.querySelector('[data-testid="subscriptions"] li[data-topic=%q] .badge.ok') !== null`, topic))

	// A backend publishes over REST; the page shows the data and attributes.
	got := e.restPublish(t, topic, `{"data":{"order":4711,"status":"shipped"},"attributes":{"source":"billing"}}`, http.StatusOK)
	if got["delivered"] != 1.0 {
		t.Fatalf("REST publish = %v, want delivered 1: the page's connection", got)
	}
	p.waitContains("message-log", `"order": 4711`)
	p.waitContains("message-log", "source=billing")

	// The page's own publish form goes through the same REST facade.
	p.fill("publish-data-input", `{"greeting": "hello from the form", "items": [1, 2, 3]}`)
	p.click("publish-button")
	p.waitContains("message-log", "hello from the form")
	p.waitContains("publish-result", "delivered 1 · gone 0 · failed 0")

	if path := os.Getenv("WSGATEWAY_SCREENSHOT"); path != "" {
		p.screenshot(path)
	}

	t.Run("bad input is refused with a readable message", func(t *testing.T) {
		before := p.count(`[data-testid="message-log"] li`)
		p.fill("publish-data-input", `{"greeting": `)
		p.click("publish-button")
		p.waitContains("publish-result", "not valid JSON")

		p.fill("topic-input", "no spaces allowed")
		p.click("subscribe-button")
		p.waitContains("topic-error", "not a valid topic")
		if n := p.count(`[data-testid="subscriptions"] li`); n != 1 {
			t.Errorf("%d subscriptions listed after a refused subscribe, want 1", n)
		}
		p.fill("topic-input", topic)

		// Nothing reached the page: the next message is the only new one.
		e.restPublish(t, topic, `{"data":"after the bad input"}`, http.StatusOK)
		p.waitContains("message-log", "after the bad input")
		if n := p.count(`[data-testid="message-log"] li`); n != before+1 {
			t.Errorf("message log grew by %d, want 1: the invalid JSON was published", n-before)
		}
		if subs := e.subscribers(t, topic); !slices.Equal(subs, []string{first}) {
			t.Errorf("subscribers of %s = %v, want only the page's [%s]", topic, subs, first)
		}
	})

	t.Run("reconnects and resubscribes after the server drops it", func(t *testing.T) {
		e.deleteConnection(t, first)
		second := e.awaitSoleSubscriber(t, topic, first)
		p.waitText("status", "connected")
		if !slices.Equal(e.stack.Emulator.ConnectionIDs(), []string{second}) {
			t.Errorf("open connections = %v, want only the page's new one %s", e.stack.Emulator.ConnectionIDs(), second)
		}
		e.restPublish(t, topic, `{"data":{"after":"reconnect"}}`, http.StatusOK)
		p.waitContains("message-log", `"after": "reconnect"`)
	})

	t.Run("unsubscribe", func(t *testing.T) {
		p.clickCSS(fmt.Sprintf(`[data-testid="subscriptions"] button[data-topic=%q]`, topic))
		poll.Until(t, eventually, "the page's subscription removed", func() bool { return len(e.subscribers(t, topic)) == 0 })
		p.waitFor("the subscription list empty", `document.querySelectorAll('[data-testid="subscriptions"] li').length === 0`)
	})

	p.noExceptions()
}

// testRefusedConnection points the page at WebSocket URLs that never
// connect; the page says so in words, stays usable, and keeps retrying.
func testRefusedConnection(t *testing.T, browser context.Context) {
	t.Run("server down", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l.Close() // nothing listens there any more
		expectRefused(t, browser, "ws://"+l.Addr().String()+"/")
	})

	t.Run("bad token on a stack that enforces connect tokens", func(t *testing.T) {
		e := start(t, map[string]string{
			"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
			"CONNECT_TOKEN_SECRET": testSecret,
		})
		expectRefused(t, browser, "ws://"+e.stack.WSAddr+"/")
		if ids := e.stack.Emulator.ConnectionIDs(); len(ids) != 0 {
			t.Errorf("refused handshakes left connections %v", ids)
		}
	})

	t.Run("handshake refused", func(t *testing.T) {
		// Answers the handshake with 403, as API Gateway does when $connect
		// refuses a token, and records the tokens it was offered.
		var mu sync.Mutex
		var tokens []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			tokens = append(tokens, r.URL.Query().Get("token"))
			mu.Unlock()
			http.Error(w, "Forbidden", http.StatusForbidden)
		}))
		t.Cleanup(srv.Close)
		expectRefused(t, browser, "ws"+strings.TrimPrefix(srv.URL, "http")+"/")

		poll.Until(t, eventually, "a retry", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(tokens) >= 2
		})
		mu.Lock()
		defer mu.Unlock()
		if slices.ContainsFunc(tokens, func(s string) bool { return s != "let-me-in" }) {
			t.Errorf("tokens offered = %q, want the page's ?token= every time", tokens)
		}
	})
}

// expectRefused opens the page, with a token, on a stack whose WebSocket
// URL is wsURL, and checks it reports the refusal.
func expectRefused(t *testing.T, browser context.Context, wsURL string) {
	t.Helper()
	pages := httptest.NewServer(web.Handler(web.Config{WebSocketURL: wsURL}))
	t.Cleanup(pages.Close)
	p := openPage(t, browser, pages.URL+"/?token=let-me-in")
	p.waitContains("connection-error", "Could not connect to "+wsURL)
	p.waitContains("status", "retrying in")
	if s := p.text("status"); strings.Contains(s, "connected") {
		t.Errorf("status %q while refused reads as connected", s)
	}
	if s := p.text("connection-error"); strings.Contains(s, "let-me-in") {
		t.Errorf("the error message %q shows the token", s)
	}
	// The rest of the page still works.
	p.fill("publish-data-input", "not json")
	p.click("publish-button")
	p.waitContains("publish-result", "not valid JSON")
	p.noExceptions()
}

// browsers are the Chromium builds the browser tests run on, in order of
// preference. Chromium's headless shell is the same engine without the
// browser's windowing and profile machinery: the tests' pages run alike in
// both, and the shell takes about 40 % less CPU for them.
var browsers = []string{"chromium-headless-shell", "chromium"}

// startBrowser starts a headless Chromium for the test and returns its
// context; tabs are opened from it.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range browsers {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		// A missing browser fails, never skips: CI must not pass untested.
		t.Fatalf("the browser test needs Chromium, and none of %v is on PATH: apt-get install -y chromium-headless-shell", browsers)
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc() // waits for the browser to exit and its profile to go
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// page is one tab of the browser, at laptop size.
type page struct {
	t          *testing.T
	ctx        context.Context
	mu         sync.Mutex
	exceptions []string
}

func openPage(t *testing.T, browser context.Context, url string) *page {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	ctx, cancelTimeout := context.WithTimeout(tab, 30*time.Second)
	t.Cleanup(cancelTimeout)
	p := &page{t: t, ctx: ctx}
	// Listen before the navigation so that no exception is missed.
	err := chromedp.Listen(ctx, func(ev any) {
		if ev, ok := ev.(*runtime.EventExceptionThrown); ok {
			p.mu.Lock()
			p.exceptions = append(p.exceptions, exceptionText(ev.ExceptionDetails))
			p.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	p.do(chromedp.EmulateViewport(1280, 800), chromedp.Navigate(url))
	return p
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatal(err)
	}
}

func testID(id string) chromedp.CSS { return chromedp.CSS(fmt.Sprintf("[data-testid=%q]", id)) }

func (p *page) fill(id, value string) { p.t.Helper(); p.do(chromedp.SetValue(testID(id), value)) }
func (p *page) click(id string)       { p.t.Helper(); p.do(chromedp.Click(testID(id))) }
func (p *page) clickCSS(sel string)   { p.t.Helper(); p.do(chromedp.Click(chromedp.CSS(sel))) }

// text is the element's text as rendered, hidden or not.
func (p *page) text(id string) string {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.TextContent(testID(id)))
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func (p *page) count(sel string) int {
	p.t.Helper()
	n, err := chromedp.Run(p.ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
	if err != nil {
		p.t.Fatal(err)
	}
	return n
}

// waitFor polls a JavaScript condition in the page for up to 10 s.
func (p *page) waitFor(what, js string) {
	p.t.Helper()
	if err := p.poll(js); err != nil {
		p.t.Fatalf("waiting for %s: %v", what, err)
	}
}

func (p *page) waitText(id, want string) {
	p.t.Helper()
	if err := p.poll(fmt.Sprintf("%s === %q", textJS(id), want)); err != nil {
		p.t.Fatalf("waiting for %s to read %q: %v; it reads %q", id, want, err, p.text(id))
	}
}

func (p *page) waitContains(id, want string) {
	p.t.Helper()
	if err := p.poll(fmt.Sprintf("%s.includes(%q)", textJS(id), want)); err != nil {
		p.t.Fatalf("waiting for %s to contain %q: %v; it reads %q", id, want, err, p.text(id))
	}
}

func (p *page) poll(js string) error {
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](js,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))
	return err
}

func textJS(id string) string {
	return fmt.Sprintf(`(document.querySelector('[data-testid=%q]')?.textContent ?? "")`, id)
}

func (p *page) screenshot(path string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("wrote %s", path)
}

// noExceptions fails on any uncaught exception the page raised.
func (p *page) noExceptions() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.exceptions {
		p.t.Errorf("uncaught exception in the page: %s", e)
	}
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil && d.Exception.Description != "" {
		return d.Exception.Description
	}
	return fmt.Sprintf("%s at %s:%d", d.Text, d.URL, d.LineNumber+1)
}

// awaitSoleSubscriber waits until topic has exactly one subscriber other
// than not, and returns it.
func (e *e2e) awaitSoleSubscriber(t *testing.T, topic, not string) string {
	t.Helper()
	var id string
	poll.Until(t, eventually, "one subscriber of "+topic, func() bool {
		subs := e.subscribers(t, topic)
		if len(subs) != 1 || subs[0] == not {
			return false
		}
		id = subs[0]
		return true
	})
	return id
}

// deleteConnection calls the management API's DeleteConnection with the
// real SDK client, as a backend would on AWS.
func (e *e2e) deleteConnection(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	awsCfg, err := cfg.AWS(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := apigw.New(awsCfg, "http://"+e.stack.WSAddr).DeleteConnection(ctx, id); err != nil {
		t.Fatalf("DeleteConnection(%s): %v", id, err)
	}
}
