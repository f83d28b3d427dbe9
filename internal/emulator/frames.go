package emulator

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/coder/websocket"
)

// WebSocket opcodes (RFC 6455, section 5.2) the guard looks at.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
)

// frameError is a client frame API Gateway refuses, with the close code and
// reason it closes the connection with. The reasons speak of the API's own
// limits, not of the library that found them.
type frameError struct {
	code   websocket.StatusCode
	reason string
}

func (e *frameError) Error() string {
	return fmt.Sprintf("client frame refused (%d): %s", int(e.code), e.reason)
}

var (
	errUnmasked      = &frameError{websocket.StatusProtocolError, "client frames must be masked"}
	errBinary        = &frameError{websocket.StatusUnsupportedData, "binary frames are not supported"}
	errFrameTooBig   = &frameError{websocket.StatusMessageTooBig, "frame exceeds 32 KB"}
	errMessageTooBig = &frameError{websocket.StatusMessageTooBig, "message exceeds 128 KB"}
	errInvalidUTF8   = &frameError{websocket.StatusInvalidFramePayloadData, "text message is not valid UTF-8"}
)

// frameGuard sits between a client's socket and coder/websocket, which
// gives no access to frames, and checks each frame header as it passes:
// API Gateway refuses binary frames, frames over 32 KB and messages over
// 128 KB as soon as their header says so, without reading their payload.
//
// A refused frame never reaches the library: the guard reports its error in
// place of the header (once), then discards the frame's payload and goes on
// passing the frames after it. So the library, told to close, still reads
// the client's close frame, and no unread payload makes the kernel reset
// the socket under the close frame the client is meant to see.
//
// Headers are read exactly (two bytes, then the rest), and payloads at most
// to the frame's end, so that the guard needs no buffer of its own.
type frameGuard struct {
	r io.Reader

	hdr     [14]byte
	hdrLen  int   // header bytes read so far
	ready   int   // header bytes checked and not yet passed on
	rem     int64 // payload bytes of the current frame still to come
	discard bool  // the current frame was refused: drop its payload
	msgLen  int64 // payload bytes of the data message in progress

	report  *frameError // to return from the next Read
	refused atomic.Pointer[frameError]
}

// refusal returns the first frame the guard refused, or nil.
func (g *frameGuard) refusal() *frameError {
	if g == nil {
		return nil
	}
	return g.refused.Load()
}

func (g *frameGuard) Read(p []byte) (int, error) {
	for {
		switch {
		case g.report != nil:
			err := g.report
			g.report = nil
			return 0, err
		case g.ready > 0:
			start := g.hdrLen - g.ready
			n := copy(p, g.hdr[start:g.hdrLen])
			g.ready -= n
			if g.ready == 0 {
				g.hdrLen = 0
			}
			return n, nil
		case g.rem > 0:
			q := p
			if int64(len(q)) > g.rem {
				q = q[:g.rem]
			}
			n, err := g.r.Read(q)
			g.rem -= int64(n)
			if g.discard {
				if err != nil {
					return 0, err
				}
				continue // p was scratch space
			}
			return n, err
		}
		// At a frame boundary: read the header.
		g.discard = false
		need := headerLen(g.hdr[:g.hdrLen])
		if g.hdrLen < need {
			n, err := g.r.Read(g.hdr[g.hdrLen:need])
			g.hdrLen += n
			if err != nil {
				return 0, err
			}
			continue
		}
		g.check()
	}
}

// headerLen is the length of the header that starts with b: 2 until its
// second byte is known.
func headerLen(b []byte) int {
	if len(b) < 2 {
		return 2
	}
	n := 2
	switch b[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b[1]&0x80 != 0 {
		n += 4 // the masking key
	}
	return n
}

// check judges the complete header in g.hdr and sets up its payload.
func (g *frameGuard) check() {
	b := g.hdr[:g.hdrLen]
	opcode := b[0] & 0x0f
	masked := b[1]&0x80 != 0
	length := int64(b[1] & 0x7f)
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(b[2:4]))
	case 127:
		length = int64(binary.BigEndian.Uint64(b[2:10]) &^ (1 << 63))
	}
	g.rem = length

	var err *frameError
	switch {
	case !masked:
		err = errUnmasked
	case opcode == opBinary:
		err = errBinary
	case opcode != opText && opcode != opContinuation:
		// Control frames and unknown opcodes: the library's business.
	case length > maxFrameBytes:
		err = errFrameTooBig
	default:
		if opcode == opText {
			g.msgLen = 0
		}
		g.msgLen += length
		if g.msgLen > maxMessageBytes {
			err = errMessageTooBig
		}
	}
	if err == nil {
		g.ready = g.hdrLen
		return
	}
	g.hdrLen = 0
	g.discard = true
	g.report = err
	g.refused.CompareAndSwap(nil, err)
}
