package fanout

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// MaxDataDepth bounds how deeply a message's data may nest. Browsers parse
// every message with JSON.parse on the page's main thread; a few kilobytes
// of "[[[[…" is enough to make that slow or to overflow a naive recursive
// consumer, and no real payload needs more.
const MaxDataDepth = 32

// checkData accepts one JSON value in valid UTF-8, nested at most
// MaxDataDepth deep.
func checkData(data []byte) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: data is required", ErrInvalid)
	}
	// encoding/json accepts invalid UTF-8 inside strings (replacing it on
	// decode); browsers would see mojibake, so refuse it here.
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: data is not valid UTF-8", ErrInvalid)
	}
	if !json.Valid(data) {
		return fmt.Errorf("%w: data is not valid JSON", ErrInvalid)
	}
	if d := depth(data); d > MaxDataDepth {
		return fmt.Errorf("%w: data nests %d levels deep, at most %d allowed", ErrInvalid, d, MaxDataDepth)
	}
	return nil
}

// depth is the deepest nesting of arrays and objects in valid JSON.
func depth(data []byte) int {
	deepest, level := 0, 0
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			level++
			deepest = max(deepest, level)
		case c == ']' || c == '}':
			level--
		}
	}
	return deepest
}
