package publisher

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"
)

func TestExactAsFloat64(t *testing.T) {
	t.Parallel()
	for literal, want := range map[string]bool{
		"0": true, "-0": true, "0.0e-999999999999999999999": true,
		"1": true, "1E2": true, "100.000": true, "0.1": true, "-2.5e-3": true,
		"9007199254740992": true, "9007199254740993": false, "-9007199254740993": false,
		"18014398509481984":      true, // 2^54: a float64 holds it exactly
		"1.7976931348623157e308": true, "1.8e308": false,
		"5e-324": true, "1e-400": false, "1e-999999999": false, "1e99999999999999999999": false,
		"0.30000000000000000001": false, "123456789012345678901234567890": false,
	} {
		if got := exactAsFloat64(literal); got != want {
			t.Errorf("exactAsFloat64(%s) = %v, want %v", literal, got, want)
		}
	}
}

// The gRPC check names the first non-JSON number the same way on every
// call, whatever the map order.
func TestCheckValueNumbersPath(t *testing.T) {
	t.Parallel()
	v, err := structpb.NewValue(map[string]any{"b": []any{1.0, math.NaN()}, "a": map[string]any{"x y": math.Inf(1)}})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		err := checkValueNumbers("data", v)
		if err == nil || !strings.HasPrefix(err.Error(), `data.a["x y"]: +Inf`) {
			t.Fatalf("checkValueNumbers = %v, want data.a[\"x y\"] first", err)
		}
	}
	if err := checkValueNumbers("data", structpb.NewNumberValue(0.1)); err != nil {
		t.Fatalf("0.1 refused: %v", err)
	}
}
