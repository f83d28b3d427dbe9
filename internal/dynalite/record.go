package dynalite

import (
	"cmp"
	"context"
	"reflect"
	"slices"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Call is one kind of DynamoDB call, as IAM authorizes it: the operation
// (the action dynamodb:<Operation>) on a table, or on one of its indexes
// (the resource <table ARN>/index/<Index>).
type Call struct {
	Operation string
	Table     string
	Index     string // "" for the table itself
}

// Recorder records the DynamoDB calls of the clients it is attached to, so
// that a test can compare what code really calls with what a deployment
// grants it. Every call is recorded as it starts, before it is sent: a call
// that fails (throttled, refused) still needed the right to be made.
type Recorder struct {
	mu    sync.Mutex
	calls map[Call]bool
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{calls: map[Call]bool{}}
}

// APIOption attaches the recorder to a client: add it to aws.Config's
// APIOptions, or dynamodb.Options' APIOptions. Calls of other services
// through the same config are not recorded.
func (r *Recorder) APIOption(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("dynalite.Recorder",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if awsmiddleware.GetServiceID(ctx) == "DynamoDB" {
				r.record(awsmiddleware.GetOperationName(ctx), in.Parameters)
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.After)
}

// record reads the tables and index a call's input names. The fields are
// read by name, as every DynamoDB input spells them, so that an operation
// the store starts to use is recorded without a change here: TableName
// (and IndexName) for single-table calls, the keys of RequestItems for the
// batch calls, TableName in each of TransactItems' members.
func (r *Recorder) record(operation string, input any) {
	var calls []Call
	v := reflect.Indirect(reflect.ValueOf(input))
	if v.Kind() == reflect.Struct {
		if table := stringField(v, "TableName"); table != "" {
			calls = append(calls, Call{operation, table, stringField(v, "IndexName")})
		}
		if items := v.FieldByName("RequestItems"); items.Kind() == reflect.Map {
			for _, k := range items.MapKeys() {
				calls = append(calls, Call{Operation: operation, Table: k.String()})
			}
		}
		if items := v.FieldByName("TransactItems"); items.Kind() == reflect.Slice {
			for i := range items.Len() {
				member := reflect.Indirect(items.Index(i))
				for j := range member.NumField() {
					if op := reflect.Indirect(member.Field(j)); op.Kind() == reflect.Struct {
						if table := stringField(op, "TableName"); table != "" {
							calls = append(calls, Call{Operation: operation, Table: table})
						}
					}
				}
			}
		}
	}
	if len(calls) == 0 {
		// A call on no table (ListTables): IAM authorizes it on "*".
		calls = []Call{{Operation: operation, Table: "*"}}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range calls {
		r.calls[c] = true
	}
}

// stringField reads the *string field name of the struct v, "" when unset
// or absent.
func stringField(v reflect.Value, name string) string {
	f := v.FieldByName(name)
	if f.Kind() != reflect.Pointer || f.Type().Elem().Kind() != reflect.String || f.IsNil() {
		return ""
	}
	return f.Elem().String()
}

// Calls returns what was recorded, each kind of call once, sorted.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Call, 0, len(r.calls))
	for c := range r.calls {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Call) int {
		return cmp.Or(cmp.Compare(a.Operation, b.Operation), cmp.Compare(a.Table, b.Table), cmp.Compare(a.Index, b.Index))
	})
	return out
}
