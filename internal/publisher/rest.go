package publisher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/wsgateway/wsgateway/internal/auth"
	"github.com/wsgateway/wsgateway/internal/fanout"
)

// Request size limits. The fan-out refuses envelopes over
// fanout.MaxEnvelopeBytes, so a bigger request can never be delivered; the
// limits only need room for how the same content can be spelt bigger on
// the way in.
const (
	// MaxRESTBodyBytes caps a REST request body: twice the envelope, for
	// indentation and escapes (\u00e9 is 6 bytes of JSON, 2 in the
	// envelope).
	MaxRESTBodyBytes = 2 * fanout.MaxEnvelopeBytes
	// MaxGRPCRequestBytes caps a gRPC request (in protobuf binary). It
	// is larger than the REST one because protobuf spells some data
	// bigger than JSON: the list element "0," is 2 bytes of JSON but 11
	// of google.protobuf.Value.
	MaxGRPCRequestBytes = 6 * fanout.MaxEnvelopeBytes
	// maxGRPCReceiveBytes is grpc-go's receive limit (MaxRecvMsgSize),
	// which answers ResourceExhausted before our code runs (see
	// limitRequestSize). It is set, explicitly, to twice
	// MaxGRPCRequestBytes: high enough that anything the REST facade lets
	// through (at most 5.5 × MaxRESTBodyBytes once in protobuf) meets our
	// InvalidArgument instead, and a bound on what one call can make the
	// server hold.
	maxGRPCReceiveBytes = 2 * MaxGRPCRequestBytes
)

// bearerChallenge is the WWW-Authenticate of a 401 (RFC 6750); the
// explanation is in the body.
const bearerChallenge = `Bearer realm="wsgateway"`

// guardREST is the facade's HTTP edge, ahead of the gateway: it refuses
// callers without a valid key before reading a byte of their body (so an
// unauthenticated caller costs no memory, whatever it sends), then reads
// the body up to MaxRESTBodyBytes. keys nil means auth is off.
func guardREST(gw *runtime.ServeMux, keys *auth.APIKeys) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, out := runtime.MarshalerForRequest(gw, r)
		if keys != nil && !authorizedValues(r.Header.Values("Authorization"), keys) {
			runtime.HTTPError(r.Context(), gw, out, w, r, errUnauthenticated)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			tooLarge := &runtime.HTTPStatusError{
				HTTPStatus: http.StatusRequestEntityTooLarge,
				Err:        toStatus(fmt.Errorf("%w: the request body is larger than the limit of %d bytes", errRequestTooLarge, MaxRESTBodyBytes)),
			}
			if r.ContentLength > MaxRESTBodyBytes {
				runtime.HTTPError(r.Context(), gw, out, w, r, tooLarge)
				return
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRESTBodyBytes))
			if err != nil {
				if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
					runtime.HTTPError(r.Context(), gw, out, w, r, tooLarge)
				} else {
					runtime.HTTPError(r.Context(), gw, out, w, r, status.Error(codes.InvalidArgument, "the request body could not be read"))
				}
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		gw.ServeHTTP(w, r)
	})
}

// handleRESTError is the gateway's error handler: grpc-gateway's own, but
// a 401 carries a valid RFC 6750 challenge instead of the status message
// (which the default handler puts in WWW-Authenticate).
func handleRESTError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, challengeWriter{w}, r, err)
}

type challengeWriter struct{ http.ResponseWriter }

func (w challengeWriter) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", bearerChallenge)
	}
	w.ResponseWriter.WriteHeader(code)
}

// allowedMethods makes a wrong method on a REST route 405 with Allow
// (grpc-gateway answers 501) by registering, for every other standard
// method, a handler that says so. The routes come from the OpenAPI
// document generated from the same HTTP rules as the gateway, so the two
// cannot drift apart. A method HTTP does not define stays 501 (RFC 9110:
// not implemented).
func allowedMethods(mux *runtime.ServeMux, openAPI []byte) error {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		return fmt.Errorf("read routes from the OpenAPI document: %w", err)
	}
	standard := []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodTrace}
	for path, ops := range doc.Paths {
		var allowed []string
		for m := range ops {
			if m := strings.ToUpper(m); slices.Contains(standard, m) {
				allowed = append(allowed, m)
			}
		}
		slices.Sort(allowed)
		allow := strings.Join(allowed, ", ")
		for _, m := range standard {
			if slices.Contains(allowed, m) {
				continue
			}
			err := mux.HandlePath(m, path, func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
				w.Header().Set("Allow", allow)
				_, out := runtime.MarshalerForRequest(mux, r)
				runtime.HTTPError(r.Context(), mux, out, w, r, &runtime.HTTPStatusError{
					HTTPStatus: http.StatusMethodNotAllowed,
					Err:        status.Errorf(codes.Unimplemented, "method %s is not allowed here; allowed: %s", r.Method, allow),
				})
			})
			if err != nil {
				return fmt.Errorf("route %s %s: %w", m, path, err)
			}
		}
	}
	return nil
}

// restJSON is the facade's JSON: grpc-gateway's JSONPb, but a request body
// is checked before protojson decodes it, so that refusals speak the API's
// terms (an unknown field is `unknown field "bogus"`, not protojson's
// `proto: (line 1:11): …`) and numbers in google.protobuf.Value fields
// that a double cannot carry exactly are refused instead of rounded (see
// checkJSONNumbers): once decoded, 9007199254740993 is indistinguishable
// from 9007199254740992.
type restJSON struct {
	*runtime.JSONPb
}

// NewDecoder implements runtime.Marshaler. The body was already read and
// capped by guardREST.
func (m restJSON) NewDecoder(r io.Reader) runtime.Decoder {
	return runtime.DecoderFunc(func(v any) error {
		raw, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			return io.EOF // an empty body is an empty message, as with JSONPb
		}
		return m.Unmarshal(raw, v)
	})
}

// Unmarshal implements runtime.Marshaler.
func (m restJSON) Unmarshal(data []byte, v any) error {
	msg, ok := v.(proto.Message)
	if !ok {
		return m.JSONPb.Unmarshal(data, v)
	}
	if err := checkRequestJSON(data, msg.ProtoReflect().Descriptor()); err != nil {
		return err
	}
	if err := m.JSONPb.Unmarshal(data, v); err != nil {
		// What is left (a string where a number belongs, …) is named by
		// field; protojson's package prefix means nothing to a caller.
		// (protojson varies the space after "proto:" on purpose.)
		msg, _ := strings.CutPrefix(err.Error(), "proto:")
		return errors.New(strings.TrimLeft(msg, " \u00a0"))
	}
	return nil
}

// checkRequestJSON checks a request body against md, the request message:
// valid JSON, an object, known fields only, exact numbers.
func checkRequestJSON(data []byte, md protoreflect.MessageDescriptor) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return fmt.Errorf("the request body is not valid JSON (at byte %d)", se.Offset)
		}
		return errors.New("the request body must be a JSON object")
	}
	if fields == nil {
		return errors.New("the request body must be a JSON object")
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		// protojson accepts a field's JSON name and its proto name.
		fd := md.Fields().ByJSONName(name)
		if fd == nil {
			fd = md.Fields().ByTextName(name)
		}
		if fd == nil {
			return fmt.Errorf("unknown field %q", name)
		}
		if fd.Message() != nil && fd.Message().FullName().Parent() == "google.protobuf" &&
			slices.Contains([]protoreflect.Name{"Value", "Struct", "ListValue"}, fd.Message().Name()) {
			if err := checkJSONNumbers(fd.JSONName(), fields[name]); err != nil {
				return err
			}
		}
	}
	return nil
}

// queryParser is grpc-gateway's query parser, but a parameter that does
// not parse is refused in REST terms (`pageSize must be a whole number`)
// rather than with a Go error about page_size and strconv.
type queryParser struct {
	runtime.DefaultQueryParser
}

// Parse implements runtime.QueryParameterParser.
func (p *queryParser) Parse(msg proto.Message, values url.Values, filter *utilities.DoubleArray) error {
	fields := msg.ProtoReflect().Descriptor().Fields()
	for name, vals := range values {
		fd := fields.ByJSONName(name)
		if fd == nil {
			fd = fields.ByTextName(name)
		}
		if fd == nil || fd.IsList() || fd.IsMap() {
			continue // ignored, as grpc-gateway ignores unknown parameters
		}
		if len(vals) > 1 {
			return fmt.Errorf("%s is given %d times; give it once", fd.JSONName(), len(vals))
		}
		if err := checkQueryValue(fd, vals[0]); err != nil {
			return err
		}
	}
	return p.DefaultQueryParser.Parse(msg, values, filter)
}

func checkQueryValue(fd protoreflect.FieldDescriptor, v string) error {
	var bits int
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		bits = 32
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		bits = 64
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return checkUnsigned(fd, v, 32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return checkUnsigned(fd, v, 64)
	default:
		return nil
	}
	if _, err := strconv.ParseInt(v, 10, bits); err != nil {
		return fmt.Errorf("%s must be a whole number (%d-bit)", fd.JSONName(), bits)
	}
	return nil
}

// checkUnsigned is checkQueryValue for fields that cannot be negative
// (sinceOffset): the message says so.
func checkUnsigned(fd protoreflect.FieldDescriptor, v string, bits int) error {
	if _, err := strconv.ParseUint(v, 10, bits); err != nil {
		return fmt.Errorf("%s must be a whole number, 0 or more (%d-bit)", fd.JSONName(), bits)
	}
	return nil
}
