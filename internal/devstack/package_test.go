package devstack_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The registry versions of what the consumer needs besides the package: the
// types of ws and of Node 20. ws and TypeScript themselves are the
// repository's own, from its package.json.
const (
	typesWS   = "@types/ws@8.18.2"
	typesNode = "@types/node@20.19.43"
)

// consumerTS is an app of the package: strict TypeScript against the
// package's declarations, run under Node with ws. It subscribes to a
// pattern, publishes from the client to a topic under it and must get its
// own message back, the one the publish answered for. Lines marked
// @ts-expect-error must not type-check: declarations that were any would
// let them through, and tsc fails on an expectation that is not met.
const consumerTS = `import WebSocket from "ws";
import { GatewayClient, GatewayError, matchTopic, type Published, type TopicMessageFrame } from "@wsgateway/client";

const url = process.env.WSGATEWAY_URL;
if (!url) {
  throw new Error("WSGATEWAY_URL is not set");
}
const client = new GatewayClient(url, { WebSocket, publishTimeoutMs: 5000 });
// Never called: only for tsc, on types it infers from the package's.
async function misuses() {
  // @ts-expect-error a topic is a string
  client.subscribe(42);
  client.subscribe("a.*", (m) => {
    // @ts-expect-error a message's topic is a string
    const topic: number = m.topic;
    return topic;
  });
  const published = await client.publish("a", null);
  // @ts-expect-error an offset is a number
  const offset: string = published.offset;
  return offset;
}
void misuses;

const pattern = "pkg.*";
const topic = "pkg.room";
if (!matchTopic(pattern, topic) || matchTopic(pattern, "pkg")) {
  throw new Error("matchTopic disagrees with the server");
}
const subscribed = new Promise<void>((resolve) =>
  client.on("subscriptions", (subs) => subs.some((s) => s.topic === pattern && s.active) && resolve()),
);
const mine = new Promise<TopicMessageFrame>((resolve) => client.subscribe(pattern, resolve));
// Nothing here should go wrong: an error event, or waiting long, fails at once.
client.on("error", (e: GatewayError) => {
  console.error("error event:", e.code, e.message);
  process.exit(1);
});
setTimeout(() => {
  console.error("no answer within 20 s; status:", client.status);
  process.exit(1);
}, 20_000).unref();
client.connect();
await subscribed;

try {
  await client.publish(pattern, 1);
  throw new Error("publishing to a pattern did not reject");
} catch (err) {
  if (!(err instanceof GatewayError) || err.code !== "invalid_topic") {
    throw err;
  }
}

const published: Published = await client.publish(topic, { text: "hello from Node" }, { via: "package" });
const m = await mine;
client.close();
console.log(JSON.stringify({ published, received: { topic: m.topic, id: m.id, offset: m.offset, epoch: m.epoch, data: m.data, attributes: m.attributes } }));
`

// consumerTSConfig compiles the app strictly, without skipLibCheck: the
// package's declarations are checked as well as the app's use of them, so
// a type they name that does not resolve fails rather than turning into
// any. skipDefaultLibCheck spares only TypeScript's own lib.*.d.ts, which
// ship with the pinned compiler and say nothing about the package: a
// second and a half of tsc's CPU on every run.
const consumerTSConfig = `{
  "compilerOptions": {
    "strict": true,
    "target": "es2022",
    "module": "nodenext",
    "moduleResolution": "nodenext",
    "types": ["node"],
    "skipDefaultLibCheck": true,
    "outDir": "dist"
  },
  "files": ["consumer.ts"]
}
`

// TestClientPackage packs web/ as npm would publish it, installs the
// tarball in a project outside the repository, type-checks a TypeScript app
// against it and runs the app under Node against a devstack: what a user of
// the package gets, declarations included, works as documented.
func TestClientPackage(t *testing.T) {
	t.Parallel()
	npm, err := exec.LookPath("npm")
	if err != nil {
		// Fails, never skips: CI must not pass untested.
		t.Fatalf("the package test needs npm: %v", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var rootPkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	raw, err := os.ReadFile(filepath.Join(root, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &rootPkg); err != nil {
		t.Fatal(err)
	}
	ws, ts := rootPkg.DevDependencies["ws"], rootPkg.DevDependencies["typescript"]
	if ws == "" || ts == "" {
		t.Fatalf("package.json's devDependencies name no ws or typescript: %v", rootPkg.DevDependencies)
	}

	tmp := t.TempDir()
	packed := filepath.Join(tmp, "packed")
	app := filepath.Join(tmp, "app")
	for _, dir := range []string{packed, app} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(dir string, timeout time.Duration, env []string, name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		// Every version installed is exact, so npm's cache may answer for
		// what it holds without asking the registry again; what it lacks is
		// still fetched.
		cmd.Env = append(os.Environ(), append([]string{"npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false", "npm_config_prefer_offline=true"}, env...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s (in %s): %v\n%s\n%s", name, strings.Join(args, " "), dir, err, out, stderr.String())
		}
		return string(out)
	}

	// npm pack runs prepack, which generates the declarations the package exports.
	run(filepath.Join(root, "web"), 2*time.Minute, nil, npm, "pack", "--pack-destination", packed)
	tarballs, err := filepath.Glob(filepath.Join(packed, "*.tgz"))
	if err != nil || len(tarballs) != 1 {
		t.Fatalf("npm pack wrote %v (%v), want one tarball", tarballs, err)
	}
	listing := run(packed, time.Minute, nil, "tar", "-tzf", tarballs[0])
	for _, want := range []string{"package/package.json", "package/README.md", "package/static/wsgateway.js", "package/types/wsgateway.d.ts"} {
		if !strings.Contains(listing, want+"\n") {
			t.Errorf("the tarball has no %s:\n%s", want, listing)
		}
	}

	for name, content := range map[string]string{
		"package.json":  `{"name": "wsgateway-client-consumer", "private": true, "type": "module"}`,
		"tsconfig.json": consumerTSConfig,
		"consumer.ts":   consumerTS,
	} {
		if err := os.WriteFile(filepath.Join(app, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(app, 5*time.Minute, nil, npm, "install", "--no-audit", "--no-fund", tarballs[0], "ws@"+ws, "typescript@"+ts, typesWS, typesNode)
	tsc := filepath.Join(app, "node_modules", "typescript", "bin", "tsc")
	// One compile both type-checks and emits: tsc exits non-zero on any
	// type error, an unmet @ts-expect-error included, even though it still
	// writes dist/, and run fails on that.
	run(app, 2*time.Minute, nil, "node", tsc, "-p", ".")

	e := start(t, map[string]string{"WS_ADDR": "127.0.0.1:0", "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0"})
	out := run(app, time.Minute, []string{"WSGATEWAY_URL=ws://" + e.stack.WSAddr + "/"}, "node", filepath.Join("dist", "consumer.js"))
	var got struct {
		Published struct {
			Topic, ID, Epoch string
			Offset           int64
		}
		Received struct {
			Topic, ID, Epoch string
			Offset           int64
			Data             map[string]any
			Attributes       map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("the app printed %q: %v", out, err)
	}
	p, r := got.Published, got.Received
	if p.Topic != "pkg.room" || p.ID == "" || p.Offset < 1 || p.Epoch == "" {
		t.Errorf("publish resolved with %+v, want topic pkg.room, an id and a position", p)
	}
	if r.Topic != p.Topic || r.ID != p.ID || r.Offset != p.Offset || r.Epoch != p.Epoch ||
		r.Data["text"] != "hello from Node" || r.Attributes["via"] != "package" {
		t.Errorf("the pattern's handler got %+v, want the message published as %+v", r, p)
	}
}
