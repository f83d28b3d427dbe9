package fanout

import (
	"crypto/rand"
	"fmt"
)

// newID returns a random (version 4) UUID in its text form. 122 random bits
// make collisions a non-issue, so clients can dedupe retried deliveries by id.
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand panics rather than return short
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
