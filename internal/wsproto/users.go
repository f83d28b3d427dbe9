package wsproto

// A backend can reach a user (a connect token's "sub") on every connection
// they have open, and close them. Both arrive as server frames:
//
//	{"type":"message","user":"alice","id":"…","data":…,"attributes":{…},"publishTime":"…"}
//	{"type":"disconnect","reason":"signed out","reconnect":false}
//
// The first is a Message with User set and no Topic, offset or epoch: a
// user's messages are no topic's stream, and none is retained. The second
// comes just before the server closes the connection.

// Disconnect tells a connection it is about to be closed, and whether the
// client should open a new one.
type Disconnect struct {
	Type      string `json:"type"`
	Reason    string `json:"reason"`
	Reconnect bool   `json:"reconnect"`
}

// DisconnectFrame encodes the disconnect frame, once per Disconnect call.
func DisconnectFrame(reason string, reconnect bool) []byte {
	return mustMarshal(Disconnect{TypeDisconnect, reason, reconnect})
}
