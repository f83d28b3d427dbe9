package devstack_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/wsgateway/wsgateway/internal/poll"
	"github.com/wsgateway/wsgateway/web"
)

// TestChat drives the chat page in Chromium tabs on one room: two count two
// members, a message sent from one shows once in both, and when the second
// is dropped server-side and kept away while the first sends more, it comes
// back with the messages it missed, once and in order. A third tab joining
// later shows the room's messages from its history.
func TestChat(t *testing.T) {
	t.Parallel()
	browser := startBrowser(t)
	e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
	const room, topic = "r1", "chat.r1"

	// Bob reaches the WebSocket API through a gate the test can shut, so
	// that he is surely away while Alice sends (his reconnect would race
	// her otherwise), and everything else through a proxy to the stack.
	gate := newGate(t, e.stack.WSAddr)
	stack, err := url.Parse(e.http)
	if err != nil {
		t.Fatal(err)
	}
	bobSite := http.NewServeMux()
	bobSite.Handle("GET /config.json", web.Handler(web.Config{WebSocketURL: "ws://" + gate.addr() + "/"}))
	bobSite.Handle("/", httputil.NewSingleHostReverseProxy(stack))
	bobServer := httptest.NewServer(bobSite)
	t.Cleanup(bobServer.Close)

	// One at a time, so that each connection is known by whose it is.
	alice := openPage(t, browser, e.http+"/chat?room="+room+"&name=alice")
	aliceConn := e.awaitSoleSubscriber(t, topic, "")
	bob := openPage(t, browser, bobServer.URL+"/chat?room="+room+"&name=bob")
	var bobConn string
	poll.Until(t, eventually, "bob subscribed beside alice", func() bool {
		subs := e.subscribers(t, topic)
		if len(subs) != 2 || !slices.Contains(subs, aliceConn) {
			return false
		}
		bobConn = subs[0]
		if bobConn == aliceConn {
			bobConn = subs[1]
		}
		return true
	})
	for _, p := range []*page{alice, bob} {
		p.waitText("status", "connected")
		p.waitText("room-title", topic)
		p.waitText("member-count", "2 here")
	}

	say := func(text string) {
		t.Helper()
		alice.fill("message-input", text)
		alice.click("send-button")
		alice.waitFor("the message field cleared, as after a publish answered", textValueJS("message-input")+` === ""`)
	}
	say("hello bob")
	want := []string{"alice: hello bob"}
	waitMessages(t, alice, want)
	waitMessages(t, bob, want)

	gate.shut()
	e.deleteConnection(t, bobConn)
	poll.Until(t, eventually, "bob's subscription gone with his connection", func() bool {
		return slices.Equal(e.subscribers(t, topic), []string{aliceConn})
	})
	bob.waitContains("status", "retrying in")
	say("are you there?")
	say("bob?")
	want = append(want, "alice: are you there?", "alice: bob?")
	waitMessages(t, alice, want)
	gate.open()

	poll.Until(t, eventually, "bob back on the room", func() bool { return len(e.subscribers(t, topic)) == 2 })
	bob.waitText("status", "connected")
	waitMessages(t, bob, want)
	alice.waitText("member-count", "2 here")

	// A newcomer sees what was said before joining, from the room's history.
	carol := openPage(t, browser, e.http+"/chat?room="+room+"&name=carol")
	waitMessages(t, carol, want)
	carol.waitText("member-count", "3 here")
	for _, p := range []*page{alice, bob, carol} {
		p.noExceptions()
	}
}

// waitMessages waits until the page's chat shows exactly want ("name:
// text", oldest first): each message once, in order.
func waitMessages(t *testing.T, p *page, want []string) {
	t.Helper()
	js := `JSON.stringify([...document.querySelectorAll('[data-testid="chat-log"] li')]
		.map((li) => li.querySelector(".meta .topic").textContent + ": " + li.querySelector(".text").textContent))`
	wantJSON, _ := json.Marshal(want)
	if err := p.poll(fmt.Sprintf("%s === %q", js, wantJSON)); err != nil {
		got, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](js))
		t.Fatalf("the chat shows %s, want %s: %v", got, wantJSON, err)
	}
}

func textValueJS(id string) string {
	return fmt.Sprintf(`document.querySelector('[data-testid=%q]').value`, id)
}
