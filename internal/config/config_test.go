package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{WSAddr: "127.0.0.1:8080", GRPCAddr: "127.0.0.1:9090", HTTPAddr: "127.0.0.1:8081", TableName: "wsgateway", Region: "us-east-1", MaxSubscriptions: 100}
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

func TestUsageListsEverySetting(t *testing.T) {
	t.Parallel()
	u := Usage("x")
	for _, s := range Settings {
		if !strings.Contains(u, s.Name) {
			t.Errorf("usage misses %s", s.Name)
		}
	}
}
