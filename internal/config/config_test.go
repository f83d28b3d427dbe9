package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{WSAddr: "127.0.0.1:8080", GRPCAddr: "127.0.0.1:9090", HTTPAddr: "127.0.0.1:8081", TableName: "wsgateway", Region: "us-east-1", MaxSubscriptions: 100, CallTimeout: 10 * time.Second,
		HistoryTTL: 5 * time.Minute, RecoveryMaxMessages: 300, ClientPublishRate: 10, ClientPublishBurst: 20}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load(empty) = %+v, want %+v", c, want)
	}
	if c.RequireAPIGW() == nil {
		t.Error("RequireAPIGW passed with APIGW_ENDPOINT unset")
	}
}

func TestLoadValues(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"WS_ADDR": ":1", "GRPC_ADDR": "0.0.0.0:2", "HTTP_ADDR": "[::1]:3", "TABLE_NAME": "t-1.x",
		"DYNAMODB_ENDPOINT": "http://127.0.0.1:8000", "APIGW_ENDPOINT": "https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
		"AWS_REGION": "eu-west-1", "API_KEYS": " k1, ,k2 ", "CONNECT_TOKEN_SECRET": "0123456789abcdef",
	}
	c, err := Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.APIGWEndpoint != "https://abc.execute-api.eu-west-1.amazonaws.com/prod" {
		t.Errorf("APIGW_ENDPOINT kept its trailing slash: %q", c.APIGWEndpoint)
	}
	if !slices.Equal(c.APIKeys, []string{"k1", "k2"}) {
		t.Errorf("API_KEYS = %q, want [k1 k2]", c.APIKeys)
	}
	if c.TableName != "t-1.x" || c.Region != "eu-west-1" || c.WSAddr != ":1" || c.ConnectTokenSecret != "0123456789abcdef" {
		t.Errorf("Load = %+v", c)
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"WS_ADDR": "8080", "TABLE_NAME": "a b", "DYNAMODB_ENDPOINT": "localhost:8000",
		"APIGW_ENDPOINT": "ftp://x", "CONNECT_TOKEN_SECRET": "short", "MAX_SUBSCRIPTIONS_PER_CONNECTION": "0",
	}
	_, err := Load(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("Load accepted invalid settings")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, name := range []string{"WS_ADDR", "TABLE_NAME", "DYNAMODB_ENDPOINT", "APIGW_ENDPOINT", "CONNECT_TOKEN_SECRET", "MAX_SUBSCRIPTIONS_PER_CONNECTION"} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, name) }) {
			t.Errorf("no line about %s in:\n%v", name, err)
		}
	}
}

// Set but holding nothing is a misconfiguration, not "auth off": starting
// with auth off because of a stray comma or a blank secret would open the
// stack to anyone.
func TestLoadRefusesSetButEmptyCredentials(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, value string }{
		{"API_KEYS", ","},
		{"API_KEYS", " , ,"},
		{"API_KEYS", " "},
		{"CONNECT_TOKEN_SECRET", " "},
		{"CONNECT_TOKEN_SECRET", "\t\n                  "},
	} {
		c, err := Load(func(k string) string {
			if k == tt.name {
				return tt.value
			}
			return ""
		})
		if err == nil {
			t.Errorf("%s=%q: Load accepted it (APIKeys %q), want an error", tt.name, tt.value, c.APIKeys)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.name) {
			t.Errorf("%s=%q: error %q does not name the variable", tt.name, tt.value, err)
		}
	}
}

func TestCheckConnectTokenSecret(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "   ", "short", strings.Repeat("x", MinSecretLength-1)} {
		if err := CheckConnectTokenSecret(bad); err == nil || !strings.Contains(err.Error(), "CONNECT_TOKEN_SECRET") {
			t.Errorf("CheckConnectTokenSecret(%q) = %v, want an error naming CONNECT_TOKEN_SECRET", bad, err)
		}
	}
	if err := CheckConnectTokenSecret(strings.Repeat("x", MinSecretLength)); err != nil {
		t.Errorf("a %d-character secret: %v", MinSecretLength, err)
	}
	// Load refuses exactly what the check refuses, so the token command and
	// the servers agree.
	if _, err := Load(func(k string) string {
		if k == "CONNECT_TOKEN_SECRET" {
			return "short"
		}
		return ""
	}); err == nil {
		t.Error("Load accepted a secret CheckConnectTokenSecret refuses")
	}
}

func TestUsageListsTheNamedSettings(t *testing.T) {
	t.Parallel()
	u := Usage("x", "TABLE_NAME", "CALL_TIMEOUT")
	for _, s := range Settings {
		named := s.Name == "TABLE_NAME" || s.Name == "CALL_TIMEOUT"
		if got := strings.Contains(u, s.Name+" "); got != named {
			t.Errorf("usage lists %s: %v, want %v:\n%s", s.Name, got, named, u)
		}
	}
	if u := Usage("x"); strings.Contains(u, "_") {
		t.Errorf("Usage with no settings lists some:\n%s", u)
	}
	defer func() {
		if recover() == nil {
			t.Error("Usage accepted a setting that does not exist")
		}
	}()
	Usage("x", "NO_SUCH_SETTING")
}

// The devstack's EMULATOR_* settings: parsed when sensible, the burst
// following the quota as AWS's does, every problem reported by name.
func TestLoadEmulator(t *testing.T) {
	t.Parallel()
	load := func(env map[string]string) (Config, error) {
		return Load(func(k string) string { return env[k] })
	}
	c, err := load(map[string]string{
		"EMULATOR_LATENCY": "20ms", "EMULATOR_QUOTA": "100", "EMULATOR_FAULT_THROTTLE": "0.1",
		"EMULATOR_FAULT_SERVER_ERROR": "0.05", "EMULATOR_FAULT_LOSE_DISCONNECT": "1", "EMULATOR_FAULT_SEED": "7",
	})
	want := Emulator{Latency: 20 * time.Millisecond, Quota: 100, QuotaBurst: 50, Throttle: 0.1, ServerError: 0.05, LoseDisconnect: 1, Seed: 7}
	if err != nil || c.Emulator != want {
		t.Errorf("Load = %+v, %v; want %+v", c.Emulator, err, want)
	}
	if c, err := load(map[string]string{"EMULATOR_QUOTA": "1", "EMULATOR_QUOTA_BURST": "3"}); err != nil || c.Emulator.QuotaBurst != 3 {
		t.Errorf("EMULATOR_QUOTA_BURST=3: Load = %+v, %v", c.Emulator, err)
	}
	if c, err := load(map[string]string{"EMULATOR_QUOTA": "1"}); err != nil || c.Emulator.QuotaBurst != 1 {
		t.Errorf("EMULATOR_QUOTA=1: burst %d, %v; want 1, or no call would pass", c.Emulator.QuotaBurst, err)
	}

	_, err = load(map[string]string{
		"EMULATOR_LATENCY": "-1s", "EMULATOR_QUOTA": "NaN", "EMULATOR_QUOTA_BURST": "5",
		"EMULATOR_FAULT_THROTTLE": "0.7", "EMULATOR_FAULT_SERVER_ERROR": "0.7", "EMULATOR_FAULT_LOSE_DISCONNECT": "2",
		"EMULATOR_FAULT_SEED": "-1",
	})
	if err == nil {
		t.Fatal("Load accepted invalid EMULATOR_* settings")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, name := range []string{"EMULATOR_LATENCY", "EMULATOR_QUOTA=", "EMULATOR_QUOTA_BURST", "EMULATOR_FAULT_THROTTLE + EMULATOR_FAULT_SERVER_ERROR", "EMULATOR_FAULT_LOSE_DISCONNECT", "EMULATOR_FAULT_SEED"} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, name) }) {
			t.Errorf("no line about %s in:\n%v", name, err)
		}
	}
}

func TestLoadStreamSettings(t *testing.T) {
	t.Parallel()
	c, err := Load(func(k string) string {
		return map[string]string{"HISTORY_TTL": "0", "RECOVERY_MAX_MESSAGES": "5"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.HistoryTTL != 0 || c.RecoveryMaxMessages != 5 {
		t.Errorf("HISTORY_TTL=0, RECOVERY_MAX_MESSAGES=5 read as %v, %d", c.HistoryTTL, c.RecoveryMaxMessages)
	}
	for _, bad := range []map[string]string{
		{"HISTORY_TTL": "-1s"}, {"HISTORY_TTL": "forever"}, {"HISTORY_TTL": "48h"},
		{"RECOVERY_MAX_MESSAGES": "0"}, {"RECOVERY_MAX_MESSAGES": "many"},
	} {
		if _, err := Load(func(k string) string { return bad[k] }); err == nil {
			t.Errorf("Load(%v) accepted it", bad)
		} else {
			for name := range bad {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("Load(%v) = %v, which does not name %s", bad, err, name)
				}
			}
		}
	}
}

func TestLoadClientPublishSettings(t *testing.T) {
	t.Parallel()
	c, err := Load(func(k string) string {
		return map[string]string{"CLIENT_PUBLISH_RATE": "0.5", "CLIENT_PUBLISH_BURST": "1"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientPublishRate != 0.5 || c.ClientPublishBurst != 1 {
		t.Errorf("CLIENT_PUBLISH_RATE=0.5, CLIENT_PUBLISH_BURST=1 read as %v, %d", c.ClientPublishRate, c.ClientPublishBurst)
	}
	for _, bad := range []map[string]string{
		{"CLIENT_PUBLISH_RATE": "0"}, {"CLIENT_PUBLISH_RATE": "-1"}, {"CLIENT_PUBLISH_RATE": "NaN"}, {"CLIENT_PUBLISH_RATE": "Inf"},
		{"CLIENT_PUBLISH_RATE": "fast"}, {"CLIENT_PUBLISH_RATE": "20000"},
		{"CLIENT_PUBLISH_BURST": "0"}, {"CLIENT_PUBLISH_BURST": "1.5"}, {"CLIENT_PUBLISH_BURST": "many"}, {"CLIENT_PUBLISH_BURST": "10001"},
	} {
		if _, err := Load(func(k string) string { return bad[k] }); err == nil {
			t.Errorf("Load(%v) accepted it", bad)
		} else {
			for name := range bad {
				if !strings.Contains(err.Error(), name) {
					t.Errorf("Load(%v) = %v, which does not name %s", bad, err, name)
				}
			}
		}
	}
}
