package publisher

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"
)

// A message's data travels as google.protobuf.Value, whose numbers are
// IEEE 754 doubles, and reaches browsers as JSON. "Any JSON value" must not
// turn into a different value on the way, so a number is refused unless it
// arrives unchanged:
//
//   - over REST, a JSON number whose float64 round trip changes its value
//     (integers beyond ±2^53 such as 9007199254740993, more significant
//     digits than a double holds, magnitudes beyond ±1.8e308 or too small
//     to be told from 0). Spelling does not matter: 1e2, 100.0 and 100 are
//     the same value and pass.
//   - over gRPC, NaN and ±Infinity, which JSON cannot express (they would
//     arrive as the strings "NaN" and "Infinity").
//
// The refusal is INVALID_ARGUMENT / 400 and names the field path (data.id,
// data.items[3]); a number that must stay exact belongs in a string.

// inexactNumberError names the first number that cannot be carried
// exactly. path is built while the walk unwinds, innermost segment first,
// so that the happy path allocates no path strings.
type inexactNumberError struct {
	path   []string // reversed
	number string
	reason string
}

const (
	reasonInexact = "cannot be carried exactly: data numbers are 64-bit floats (integers up to ±2^53, about 17 significant digits); send it as a string instead"
	reasonNotJSON = "is not a JSON number"
)

func (e *inexactNumberError) Error() string {
	p := slices.Clone(e.path)
	slices.Reverse(p)
	return fmt.Sprintf("%s: %s %s", strings.Join(p, ""), e.number, e.reason)
}

func (e *inexactNumberError) within(segment string) error {
	e.path = append(e.path, segment)
	return e
}

// memberSegment is how a path names an object member: .name for plain
// names, ["odd key"] for the rest.
func memberSegment(key string) string {
	plain := key != ""
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			plain = false
			break
		}
	}
	if plain {
		return "." + key
	}
	return "[" + strconv.Quote(key) + "]"
}

func indexSegment(i int) string { return "[" + strconv.Itoa(i) + "]" }

// checkJSONNumbers walks raw, a valid JSON value named field, and refuses
// the first number that does not survive a float64 round trip.
func checkJSONNumbers(field string, raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := walkJSON(dec); err != nil {
		if e, ok := err.(*inexactNumberError); ok {
			return e.within(field)
		}
		return err
	}
	return nil
}

func walkJSON(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Number:
		if !exactAsFloat64(string(t)) {
			return &inexactNumberError{number: string(t), reason: reasonInexact}
		}
	case json.Delim:
		switch t {
		case '{':
			for dec.More() {
				key, err := dec.Token()
				if err != nil {
					return err
				}
				if err := walkJSON(dec); err != nil {
					if e, ok := err.(*inexactNumberError); ok {
						return e.within(memberSegment(key.(string)))
					}
					return err
				}
			}
		case '[':
			for i := 0; dec.More(); i++ {
				if err := walkJSON(dec); err != nil {
					if e, ok := err.(*inexactNumberError); ok {
						return e.within(indexSegment(i))
					}
					return err
				}
			}
		}
		_, err := dec.Token() // the closing delimiter
		return err
	}
	return nil
}

// exactAsFloat64 reports whether the JSON number literal has the same
// value as the float64 it parses to, which encoding/json writes back as
// the shortest literal of that float64. The values are compared as
// decimals (digits and exponent) rather than with math/big, which would
// have to expand an exponent like 1e-999999999.
func exactAsFloat64(literal string) bool {
	f, err := strconv.ParseFloat(literal, 64)
	if err != nil || math.IsInf(f, 0) {
		return false
	}
	want, ok := canonicalDecimal(literal)
	if !ok {
		return false
	}
	got, _ := canonicalDecimal(strconv.FormatFloat(f, 'e', -1, 64))
	return want == got
}

// canonicalDecimal writes a decimal literal as sign, significant digits
// without leading or trailing zeros, and the exponent of the last digit:
// "-120.50e1" is "-1205e0". Zero of either sign is "0". ok is false if the
// exponent does not fit an int (only zero can have such an exponent and
// still be carried).
func canonicalDecimal(s string) (canon string, ok bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mantissa, expPart, hasExp := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return "0", true
	}
	exp := 0
	if hasExp {
		var err error
		if exp, err = strconv.Atoi(expPart); err != nil {
			return "", false
		}
	}
	exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	sign := ""
	if neg {
		sign = "-"
	}
	return sign + trimmed + "e" + strconv.Itoa(exp), true
}

// checkValueNumbers refuses NaN and ±Infinity anywhere in v, the numbers a
// gRPC caller can put in a google.protobuf.Value that JSON cannot carry.
func checkValueNumbers(field string, v *structpb.Value) error {
	if err := walkValue(v); err != nil {
		return err.within(field)
	}
	return nil
}

func walkValue(v *structpb.Value) *inexactNumberError {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		if math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0) {
			return &inexactNumberError{number: strconv.FormatFloat(k.NumberValue, 'g', -1, 64), reason: reasonNotJSON}
		}
	case *structpb.Value_StructValue:
		fields := k.StructValue.GetFields()
		// Sorted, so that the same message always names the same field.
		for _, key := range slices.Sorted(maps.Keys(fields)) {
			if err := walkValue(fields[key]); err != nil {
				err.within(memberSegment(key))
				return err
			}
		}
	case *structpb.Value_ListValue:
		for i, e := range k.ListValue.GetValues() {
			if err := walkValue(e); err != nil {
				err.within(indexSegment(i))
				return err
			}
		}
	}
	return nil
}
