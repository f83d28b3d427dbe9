// Package deploy holds what puts wsgateway on AWS: the SAM template, the
// publisher's Dockerfile (at the repository root) and the tests that keep
// both in step with the code, since neither can be deployed from here.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/cloudformation/apigatewayv2"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/wsgateway/wsgateway/internal/config"
	"github.com/wsgateway/wsgateway/internal/wsproto"
)

// The names the template's ARNs are built from, as the checks read them
// (see symbolic).
const (
	tableARN       = "${Table.Arn}"
	queueARN       = "${PublishQueue.Arn}"
	apiARN         = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${Stage}/"
	connectionsARN = apiARN + "POST/@connections/*"
	apiHost        = "${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage}"

	publisherRole = "PublisherTaskRole"
	// publisherCalls names the publisher container's calls in callsFile.
	publisherCalls = "publisher"
)

// routeKeys is the WebSocket route each Lambda answers; publish has none.
var routeKeys = map[string]string{
	"connect":       "$connect",
	"disconnect":    "$disconnect",
	"default":       "$default",
	"subscribe":     wsproto.ActionSubscribe,
	"unsubscribe":   wsproto.ActionUnsubscribe,
	"clientpublish": wsproto.ActionPublish,
}

// grants maps an IAM action to the resources it is allowed on.
type grants map[string][]string

// callsFile is every AWS call each Lambda's code makes, recorded by
// internal/handler's TestAWSCalls while the handlers run against dynalite
// and a management API over HTTP; that test fails when the file and the
// code differ. Its resources are named relative to the deployment (see
// resourceARN).
const callsFile = "testdata/aws-calls.json"

// awsCall is one entry of callsFile.
type awsCall struct {
	Action   string `json:"action"`
	Resource string `json:"resource"`
}

// resourceARN names a resource of callsFile as the template does: "table"
// is the table, "table/index/<name>" its index, "<METHOD>/@connections/*"
// the connections of the WebSocket API's stage.
func resourceARN(resource string) (string, error) {
	switch {
	case resource == "table":
		return tableARN, nil
	case strings.HasPrefix(resource, "table/index/"):
		return tableARN + strings.TrimPrefix(resource, "table"), nil
	case strings.HasSuffix(resource, "/@connections/*") && !strings.Contains(strings.TrimSuffix(resource, "/@connections/*"), "/"):
		return apiARN + resource, nil
	}
	return "", fmt.Errorf("%s: resource %q: want table, table/index/<name> or <METHOD>/@connections/*", callsFile, resource)
}

// platformGrants are rights a principal needs that its own code does not
// call: AWS calls on its behalf. These alone are written by hand.
var platformGrants = map[string]grants{
	// Lambda's poller reads the PublishQueue mapping's messages with the
	// function's role.
	"publish": {
		"sqs:ReceiveMessage":     {queueARN},
		"sqs:DeleteMessage":      {queueARN},
		"sqs:GetQueueAttributes": {queueARN},
	},
}

// wantGrants is every right each principal needs and nothing more: a
// Lambda, by its lambdas/<name>, what callsFile records of its code plus
// its platformGrants; the publisher container, by its role, what callsFile
// records of its service ("publisher": every RPC and its /readyz probe).
func wantGrants(calls map[string][]awsCall) (map[string]grants, error) {
	want := map[string]grants{}
	for name, cs := range calls {
		g := grants{}
		for _, c := range cs {
			arn, err := resourceARN(c.Resource)
			if err != nil {
				return nil, err
			}
			g[c.Action] = append(g[c.Action], arn)
		}
		for a, resources := range platformGrants[name] {
			g[a] = append(g[a], resources...)
		}
		if name == publisherCalls {
			name = publisherRole
		}
		want[name] = g
	}
	if _, ok := want[publisherRole]; !ok {
		return nil, fmt.Errorf("%s records no calls of the publisher container (%q)", callsFile, publisherCalls)
	}
	return want, nil
}

// repo is what the template is checked against, read from the code.
type repo struct {
	lambdas      []string                   // each lambdas/<name> with a main.go
	table        map[string]json.RawMessage // deploy/table.json
	index        string                     // the ARN of its one index
	storeActions []string                   // dynamodb:<method> for each DynamoDB call of the store
	calls        map[string][]awsCall       // callsFile
	want         map[string]grants          // wantGrants
}

var loadRepo = sync.OnceValues(func() (repo, error) {
	var r repo
	mains, err := filepath.Glob("../lambdas/*/main.go")
	if err != nil {
		return r, err
	}
	for _, m := range mains {
		r.lambdas = append(r.lambdas, filepath.Base(filepath.Dir(m)))
	}
	if len(r.lambdas) == 0 {
		return r, fmt.Errorf("no lambdas/*/main.go")
	}

	b, err := os.ReadFile("table.json")
	if err != nil {
		return r, err
	}
	var table struct {
		GlobalSecondaryIndexes []struct{ IndexName string }
	}
	if err := json.Unmarshal(b, &r.table); err != nil {
		return r, fmt.Errorf("table.json: %w", err)
	}
	if err := json.Unmarshal(b, &table); err != nil || len(table.GlobalSecondaryIndexes) != 1 {
		return r, fmt.Errorf("table.json: want exactly one global secondary index (%v)", err)
	}
	r.index = tableARN + "/index/" + table.GlobalSecondaryIndexes[0].IndexName

	methods, err := interfaceMethods("../internal/store/dynamo.go", "dynamoAPI")
	if err != nil {
		return r, err
	}
	for _, m := range methods {
		r.storeActions = append(r.storeActions, "dynamodb:"+m)
	}

	if b, err = os.ReadFile(callsFile); err != nil {
		return r, fmt.Errorf("%w: go test ./internal/handler -run TestAWSCalls -update writes it", err)
	}
	if err := json.Unmarshal(b, &r.calls); err != nil {
		return r, fmt.Errorf("%s: %w", callsFile, err)
	}
	if r.want, err = wantGrants(r.calls); err != nil {
		return r, err
	}
	// An index the code reads must be the table's.
	for name, g := range r.want {
		for a, resources := range g {
			for _, arn := range resources {
				if strings.Contains(arn, "/index/") && arn != r.index {
					return r, fmt.Errorf("%s: %s calls %s on %s, but table.json's index is %s", callsFile, name, a, arn, r.index)
				}
			}
		}
	}
	return r, nil
})

// interfaceMethods lists the methods of the interface typeName in file.
func interfaceMethods(file, typeName string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var methods []string
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != typeName {
			return true
		}
		if it, ok := ts.Type.(*ast.InterfaceType); ok {
			for _, m := range it.Methods.List {
				for _, name := range m.Names {
					methods = append(methods, name.Name)
				}
			}
		}
		return false
	})
	if len(methods) == 0 {
		return nil, fmt.Errorf("%s: no interface %s listing the store's DynamoDB calls", file, typeName)
	}
	return methods, nil
}

// deployment is the template as goformation parses it, plus the same
// document as plain JSON values for what goformation leaves untyped (IAM
// policy documents).
type deployment struct {
	*cloudformation.Template
	raw map[string]any
}

// parseMu serializes parsing: goformation registers its YAML tag handlers
// in a package-level map on every parse.
var parseMu sync.Mutex

func parseTemplate(yaml []byte, params map[string]any) (*deployment, error) {
	parseMu.Lock()
	defer parseMu.Unlock()
	opts := symbolic(params)
	tpl, err := goformation.ParseYAMLWithOptions(yaml, opts)
	if err != nil {
		return nil, err
	}
	js, err := intrinsics.ProcessYAML(yaml, opts)
	if err != nil {
		return nil, err
	}
	d := &deployment{Template: tpl}
	return d, json.Unmarshal(js, &d.raw)
}

// symbolic resolves intrinsic functions into names rather than values:
// !Ref X reads "${X}", !GetAtt X.Y reads "${X.Y}" and !Sub strings stay as
// written, so that an ARN can be compared with what it must name.
// Parameters (and AWS::NoValue) resolve to their values so that Conditions
// evaluate as they would with those parameters.
func symbolic(params map[string]any) *intrinsics.ProcessorOptions {
	return &intrinsics.ProcessorOptions{
		ParameterOverrides: params,
		EvaluateConditions: true,
		IntrinsicHandlerOverrides: map[string]intrinsics.IntrinsicHandler{
			"Ref": func(_ string, input, template any) any {
				name, _ := input.(string)
				if name == "AWS::NoValue" {
					return nil
				}
				if p, ok := lookup(template, "Parameters", name).(map[string]any); ok {
					return p["Default"]
				}
				return "${" + name + "}"
			},
			"Fn::GetAtt": func(_ string, input, _ any) any {
				if parts, ok := input.([]any); ok { // [resource, attribute]
					input = fmt.Sprintf("%v.%v", parts...)
				}
				return fmt.Sprintf("${%v}", input)
			},
			"Fn::Sub": func(_ string, input, _ any) any {
				if s, ok := input.(string); ok {
					// A function behind a route must name the stage by the
					// StageName parameter (the Stage resource depends on the
					// routes: naming it would be a cycle); both are the
					// stage's name.
					return strings.ReplaceAll(s, "${StageName}", "${Stage}")
				}
				// [string, {name: value}]: only the named values substitute.
				if args, ok := input.([]any); ok && len(args) == 2 {
					s, _ := args[0].(string)
					vars, _ := args[1].(map[string]any)
					for k, v := range vars {
						s = strings.ReplaceAll(s, "${"+k+"}", fmt.Sprint(v))
					}
					return s
				}
				return nil
			},
		},
	}
}

// lookup walks nested JSON objects; nil where a key is missing.
func lookup(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// problems collects everything wrong with a template, so that one run
// reports all of it.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// check runs every check of the template against the code.
func (d *deployment) check(r repo) problems {
	var p problems
	functions := d.checkFunctions(r, &p)
	d.checkAPI(&p)
	d.checkRoutes(r, functions, &p)
	d.checkPing(&p)
	d.checkTable(r, &p)
	d.checkEnvironment(r, functions, &p)
	d.checkIAM(r, functions, &p)
	d.checkWildcards(&p)
	d.checkOutputs(&p)
	return p
}

// checkFunctions finds each Lambda's function by its CodeUri and returns
// their logical IDs by lambdas/<name>.
func (d *deployment) checkFunctions(r repo, p *problems) map[string]string {
	globals, _ := d.GetServerlessGlobalFunction() // nil without Globals: each function says it all
	functions := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(d.GetAllServerlessFunctionResources())) {
		f := d.GetAllServerlessFunctionResources()[id]
		var uri string
		if f.CodeUri != nil && f.CodeUri.String != nil {
			uri = *f.CodeUri.String
		}
		// SAM resolves CodeUri relative to the template's directory.
		dir, name := path.Split(path.Clean(path.Join("deploy", uri)))
		if dir != "build/" {
			p.addf("%s: CodeUri %q: want ../build/<name>/, where make package puts a Lambda's bootstrap", id, uri)
			continue
		}
		if !slices.Contains(r.lambdas, name) {
			p.addf("%s: deploys build/%s, but there is no lambdas/%s/main.go", id, name, name)
		}
		functions[name] = id

		runtime, arch, handler := f.Runtime, f.Architectures, f.Handler
		if globals != nil {
			runtime = cmpOr(runtime, globals.Runtime)
			handler = cmpOr(handler, globals.Handler)
			if arch == nil && globals.Architectures != nil {
				arch = *globals.Architectures
			}
		}
		if deref(runtime) != "provided.al2023" {
			p.addf("%s: runtime %q: want provided.al2023 (a Go bootstrap on Amazon Linux 2023)", id, deref(runtime))
		}
		if !slices.Equal(arch, []string{"arm64"}) {
			p.addf("%s: architectures %q: want [arm64], what make lambdas builds for", id, arch)
		}
		if deref(handler) != "bootstrap" {
			p.addf("%s: handler %q: want bootstrap", id, deref(handler))
		}
	}
	for _, name := range r.lambdas {
		if _, ok := functions[name]; !ok {
			p.addf("lambdas/%s has no function in the template (CodeUri ../build/%s/)", name, name)
		}
	}
	for id := range d.GetAllLambdaFunctionResources() {
		p.addf("%s: a plain AWS::Lambda::Function escapes these checks: use AWS::Serverless::Function", id)
	}
	return functions
}

func (d *deployment) checkAPI(p *problems) {
	api, err := d.GetApiGatewayV2ApiWithName("WebSocketApi")
	if err != nil {
		p.addf("WebSocketApi: %v", err)
		return
	}
	if deref(api.ProtocolType) != "WEBSOCKET" || deref(api.RouteSelectionExpression) != "$request.body.action" {
		p.addf("WebSocketApi: want a WEBSOCKET API routing on $request.body.action, as the clients' frames expect")
	}
	stage, err := d.GetApiGatewayV2StageWithName("Stage")
	if err != nil {
		p.addf("Stage: %v", err)
		return
	}
	if stage.ApiId != "${WebSocketApi}" || !deref(stage.AutoDeploy) {
		p.addf("Stage: want an auto-deployed stage of WebSocketApi, so that route changes go live")
	}
	if len(d.GetAllApiGatewayV2ApiResources()) != 1 || len(d.GetAllApiGatewayV2StageResources()) != 1 {
		p.addf("want one API and one stage: the ARNs in the policies name only WebSocketApi and Stage")
	}
}

// checkRoutes wants each Lambda but publish behind its route, and publish
// reachable by direct invoke and by SQS.
func (d *deployment) checkRoutes(r repo, functions map[string]string, p *problems) {
	routes := map[string]string{} // route key → logical ID
	for id, rt := range d.GetAllApiGatewayV2RouteResources() {
		routes[rt.RouteKey] = id
	}
	known := []string{wsproto.ActionPing}
	for _, name := range r.lambdas {
		id, ok := functions[name]
		if !ok {
			continue // reported by checkFunctions
		}
		if name == "publish" {
			d.checkInvokePaths(id, p)
			continue
		}
		key, ok := routeKeys[name]
		if !ok {
			p.addf("lambdas/%s: which route does it answer? Add it to routeKeys and a route to the template", name)
			continue
		}
		known = append(known, key)
		routeID, ok := routes[key]
		if !ok {
			p.addf("%s: no route %q", id, key)
			continue
		}
		_, integration := d.integration(routeID, p)
		wantURI := "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${" + id + ".Arn}/invocations"
		if integration != nil && (integration.IntegrationType != "AWS_PROXY" || deref(integration.IntegrationUri) != wantURI) {
			p.addf("route %s: want an AWS_PROXY integration invoking %s", key, id)
		}
		// Only message routes answer the client, and only with a route
		// response.
		if key != "$connect" && key != "$disconnect" {
			d.checkTwoWay(routeID, key, p)
		}
		d.checkPermission(id, key, p)
	}
	for key, id := range routes {
		if !slices.Contains(known, key) {
			p.addf("%s: route %q: no Lambda or mock answers it", id, key)
		}
	}
}

// integration returns the integration a route targets, and its logical ID.
func (d *deployment) integration(routeID string, p *problems) (string, *apigatewayv2.Integration) {
	route := d.GetAllApiGatewayV2RouteResources()[routeID]
	target := strings.TrimPrefix(deref(route.Target), "integrations/")
	id, ok := strings.CutPrefix(target, "${")
	id, ok2 := strings.CutSuffix(id, "}")
	in, err := d.GetApiGatewayV2IntegrationWithName(id)
	if !ok || !ok2 || err != nil {
		p.addf("%s: target %q: want integrations/${<integration>}", routeID, deref(route.Target))
		return "", nil
	}
	return id, in
}

func (d *deployment) checkTwoWay(routeID, key string, p *problems) {
	route := d.GetAllApiGatewayV2RouteResources()[routeID]
	answered := deref(route.RouteResponseSelectionExpression) == "$default"
	hasResponse := slices.ContainsFunc(slices.Collect(maps.Values(d.GetAllApiGatewayV2RouteResponseResources())),
		func(rr *apigatewayv2.RouteResponse) bool {
			return rr.RouteId == "${"+routeID+"}" && rr.RouteResponseKey == "$default"
		})
	if !answered || !hasResponse {
		p.addf("route %s: clients get no answer frame without RouteResponseSelectionExpression $default and a $default route response", key)
	}
}

func (d *deployment) checkPermission(functionID, key string, p *problems) {
	for _, perm := range d.GetAllLambdaPermissionResources() {
		if perm.FunctionName == "${"+functionID+"}" && perm.Principal == "apigateway.amazonaws.com" &&
			perm.Action == "lambda:InvokeFunction" && deref(perm.SourceArn) == apiARN+key {
			return
		}
	}
	p.addf("%s: no permission for API Gateway to invoke it, from route %s of this API and stage only", functionID, key)
}

func (d *deployment) checkInvokePaths(id string, p *problems) {
	queued := false
	for _, m := range d.GetAllLambdaEventSourceMappingResources() {
		if m.FunctionName == "${"+id+"}" && deref(m.EventSourceArn) == queueARN {
			queued = slices.Contains(m.FunctionResponseTypes, "ReportBatchItemFailures")
		}
	}
	if !queued {
		p.addf("%s: want an SQS mapping from PublishQueue with ReportBatchItemFailures (the handler reports failed records)", id)
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(d.Outputs)), func(o cloudformation.Output) bool {
		return o.Value == "${"+id+".Arn}"
	}) {
		p.addf("%s: want its ARN in the outputs, for backends that invoke it directly", id)
	}
	for _, in := range d.GetAllApiGatewayV2IntegrationResources() {
		if strings.Contains(deref(in.IntegrationUri), "${"+id+".Arn}") {
			p.addf("%s: publishing is for backends, not for WebSocket clients: give it no route", id)
		}
	}
}

// checkPing wants ping answered by API Gateway with the frame the code's
// own pong is.
func (d *deployment) checkPing(p *problems) {
	var routeID string
	for id, rt := range d.GetAllApiGatewayV2RouteResources() {
		if rt.RouteKey == wsproto.ActionPing {
			routeID = id
		}
	}
	if routeID == "" {
		p.addf("no %q route: keep-alives would invoke the $default Lambda", wsproto.ActionPing)
		return
	}
	inID, in := d.integration(routeID, p)
	if in == nil {
		return
	}
	if in.IntegrationType != "MOCK" || !jsonEqual(lookup(in.RequestTemplates, "$default"), `{"statusCode": 200}`) {
		p.addf("route ping: want a MOCK integration whose $default request template is {\"statusCode\": 200}")
	}
	answered := false
	for _, ir := range d.GetAllApiGatewayV2IntegrationResponseResources() {
		if ir.IntegrationId == "${"+inID+"}" && ir.IntegrationResponseKey == "$default" {
			answered = jsonEqual(lookup(ir.ResponseTemplates, "$default"), string(wsproto.PongFrame()))
		}
	}
	if !answered {
		p.addf("route ping: want a $default integration response whose template is %s", wsproto.PongFrame())
	}
	d.checkTwoWay(routeID, wsproto.ActionPing, p)
}

// checkTable wants the table declared as deploy/table.json declares it,
// which the store's tests keep equal to the code.
func (d *deployment) checkTable(r repo, p *problems) {
	t, err := d.GetDynamoDBTableWithName("Table")
	if err != nil {
		p.addf("Table: %v", err)
		return
	}
	have := map[string]any{
		"BillingMode":             t.BillingMode,
		"AttributeDefinitions":    t.AttributeDefinitions,
		"KeySchema":               t.KeySchema,
		"GlobalSecondaryIndexes":  t.GlobalSecondaryIndexes,
		"TimeToLiveSpecification": t.TimeToLiveSpecification,
	}
	for _, name := range slices.Sorted(maps.Keys(r.table)) {
		b, err := json.Marshal(have[name])
		if err != nil || !jsonEqual(string(b), string(r.table[name])) {
			var file bytes.Buffer
			_ = json.Compact(&file, r.table[name])
			p.addf("Table.%s = %s, deploy/table.json says %s", name, b, &file)
		}
	}
	if len(d.GetAllDynamoDBTableResources()) != 1 {
		p.addf("want one table: the policies name only Table")
	}
}

// checkEnvironment wants only settings the code reads, and those it needs.
func (d *deployment) checkEnvironment(r repo, functions map[string]string, p *problems) {
	settings := map[string]bool{}
	for _, s := range config.Settings {
		settings[s.Name] = true
	}
	want := r.want
	endpoint := "https://" + apiHost
	for name, id := range functions {
		f := d.GetAllServerlessFunctionResources()[id]
		env := map[string]string{}
		if f.Environment != nil {
			env = f.Environment.Variables
		}
		for _, k := range slices.Sorted(maps.Keys(env)) {
			switch {
			case k == "AWS_REGION":
				p.addf("%s: AWS_REGION is Lambda's to set: it refuses the function", id)
			case !settings[k]:
				p.addf("%s: %s is not a setting the code reads (internal/config.Settings)", id, k)
			}
		}
		storeUser := slices.ContainsFunc(slices.Collect(maps.Keys(want[name])), func(a string) bool {
			return strings.HasPrefix(a, "dynamodb:")
		})
		if storeUser && env["TABLE_NAME"] != "${Table}" {
			p.addf("%s: TABLE_NAME = %q: want the table's name (!Ref Table)", id, env["TABLE_NAME"])
		}
		if _, posts := want[name]["execute-api:ManageConnections"]; posts && env["APIGW_ENDPOINT"] != endpoint {
			p.addf("%s: APIGW_ENDPOINT = %q: want this API's management endpoint %s", id, env["APIGW_ENDPOINT"], endpoint)
		}
		// Only $connect verifies connect tokens.
		if _, ok := env["CONNECT_TOKEN_SECRET"]; ok && name != "connect" {
			p.addf("%s: CONNECT_TOKEN_SECRET is a secret only the connect function needs", id)
		}
	}
}

// statement is an IAM policy statement, Action and Resource read as lists.
type statement struct {
	Effect      string
	Action      stringList
	Resource    stringList
	NotAction   stringList
	NotResource stringList
	Principal   any
	Condition   any
}

// stringList is IAM's string-or-list.
type stringList []string

func (l *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*l = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want an ARN or a list of ARNs (unresolved intrinsic?), got %s", b)
	}
	*l = many
	return nil
}

func decodeStatements(doc any) ([]statement, error) {
	list, ok := lookup(doc, "Statement").([]any)
	if !ok {
		return nil, fmt.Errorf("not a policy document with a Statement list: %v", doc)
	}
	b, _ := json.Marshal(list)
	var ss []statement
	if err := json.Unmarshal(b, &ss); err != nil {
		return nil, err
	}
	return ss, nil
}

// checkIAM compares what every principal may do with wantGrants.
func (d *deployment) checkIAM(r repo, functions map[string]string, p *problems) {
	names := map[string]string{} // function logical ID → lambdas/<name>
	for name, id := range functions {
		names[id] = name
	}
	have := map[string][]statement{}
	resources, _ := d.raw["Resources"].(map[string]any)
	for _, id := range slices.Sorted(maps.Keys(resources)) {
		res := resources[id]
		props, _ := lookup(res, "Properties").(map[string]any)
		var docs []any
		principal := id
		switch typ := lookup(res, "Type"); typ {
		case "AWS::Serverless::Function":
			if _, ok := names[id]; !ok {
				continue // reported by checkFunctions
			}
			principal = names[id]
			if props["Role"] != nil {
				p.addf("%s: a Role of its own escapes these checks: state its Policies inline", id)
			}
			if pol, ok := props["Policies"]; ok {
				list, ok := pol.([]any)
				if !ok {
					p.addf("%s: Policies: want a list of inline policy documents", id)
				}
				docs = list
			}
		case "AWS::IAM::Role":
			if props["ManagedPolicyArns"] != nil {
				p.addf("%s: managed policies escape these checks: state the statements inline", id)
			}
			pols, _ := props["Policies"].([]any)
			for _, pol := range pols {
				docs = append(docs, lookup(pol, "PolicyDocument"))
			}
			d.checkTrust(id, props["AssumeRolePolicyDocument"], p)
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::User", "AWS::IAM::Group":
			p.addf("%s: %s: grant rights only in a function's Policies or the publisher's role", id, typ)
			continue
		default:
			continue
		}
		have[principal] = []statement{}
		for _, doc := range docs {
			ss, err := decodeStatements(doc)
			if err != nil {
				p.addf("%s: %v: write policies as inline statements, whose rights can be checked", id, err)
				continue
			}
			have[principal] = append(have[principal], ss...)
		}
	}

	want := r.want
	for _, principal := range slices.Sorted(maps.Keys(have)) {
		w, ok := want[principal]
		if !ok {
			p.addf("%s: a principal %s does not list: record its code's calls in internal/handler's TestAWSCalls", principal, callsFile)
			continue
		}
		got := grants{}
		for _, s := range have[principal] {
			if s.Effect != "Allow" {
				continue
			}
			for _, a := range s.Action {
				got[a] = append(got[a], s.Resource...)
			}
		}
		for _, a := range slices.Sorted(maps.Keys(got)) {
			if _, ok := w[a]; !ok {
				p.addf("%s: may %s on %q, which its code never calls (%s)", principal, a, got[a], callsFile)
			}
		}
		for _, a := range slices.Sorted(maps.Keys(w)) {
			switch {
			case len(got[a]) == 0:
				p.addf("%s: lacks %s on %q, which its code calls (%s)", principal, a, w[a], callsFile)
			case !sameSet(got[a], w[a]):
				p.addf("%s: may %s on %q: want exactly %q", principal, a, got[a], w[a])
			}
		}
	}
	for _, principal := range slices.Sorted(maps.Keys(want)) {
		if _, ok := have[principal]; !ok {
			p.addf("%s: its code's calls are recorded (%s), but the template has no such principal", principal, callsFile)
		}
	}
}

// checkTrust wants the publisher's role assumable by ECS tasks only.
func (d *deployment) checkTrust(id string, doc any, p *problems) {
	ss, err := decodeStatements(doc)
	if err != nil {
		p.addf("%s: AssumeRolePolicyDocument: %v", id, err)
		return
	}
	for _, s := range ss {
		if lookup(s.Principal, "Service") != "ecs-tasks.amazonaws.com" || !slices.Equal(s.Action, []string{"sts:AssumeRole"}) {
			p.addf("%s: want it assumable by ecs-tasks.amazonaws.com only, got %v may %v", id, s.Principal, s.Action)
		}
	}
}

// checkWildcards reads every statement anywhere in the template: none may
// use a wildcard action or resource, but the connection ids under this
// API's @connections.
func (d *deployment) checkWildcards(p *problems) {
	var walk func(at string, v any)
	walk = func(at string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["Effect"]; ok {
				d.checkStatement(at, v, p)
				return
			}
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(at+"."+k, v[k])
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", at, i), e)
			}
		}
	}
	walk("Resources", d.raw["Resources"])
}

func (d *deployment) checkStatement(at string, v map[string]any, p *problems) {
	b, _ := json.Marshal(v)
	var s statement
	if err := json.Unmarshal(b, &s); err != nil {
		p.addf("%s: %v", at, err)
		return
	}
	if s.NotAction != nil || s.NotResource != nil {
		p.addf("%s: NotAction/NotResource allow everything else: name what is allowed", at)
	}
	for _, a := range s.Action {
		if strings.Contains(a, "*") {
			p.addf("%s: action %q: name each action", at, a)
		}
	}
	for _, r := range s.Resource {
		if strings.Contains(strings.TrimSuffix(r, "/@connections/*"), "*") {
			p.addf("%s: resource %q: name the ARN", at, r)
		}
	}
}

func (d *deployment) checkOutputs(p *problems) {
	for name, want := range map[string]string{
		"WebSocketURL":       "wss://" + apiHost,
		"ManagementEndpoint": "https://" + apiHost,
		"TableName":          "${Table}",
	} {
		if got := d.Outputs[name].Value; got != want {
			p.addf("output %s = %v, want %s", name, got, want)
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func cmpOr[T any](a, b *T) *T {
	if a != nil {
		return a
	}
	return b
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Compact(slices.Sorted(slices.Values(a))), slices.Compact(slices.Sorted(slices.Values(b))))
}

// jsonEqual tells whether v, a JSON text, equals want as JSON.
func jsonEqual(v any, want string) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	var a, b any
	return json.Unmarshal([]byte(s), &a) == nil && json.Unmarshal([]byte(want), &b) == nil && reflect.DeepEqual(a, b)
}

func readTemplate(t *testing.T) (repo, []byte) {
	t.Helper()
	r, err := loadRepo()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return r, b
}

func TestTemplateMatchesCode(t *testing.T) {
	t.Parallel()
	r, b := readTemplate(t)
	d, err := parseTemplate(b, nil)
	if err != nil {
		t.Fatalf("goformation cannot parse template.yaml: %v", err)
	}
	for _, problem := range d.check(r) {
		t.Error(problem)
	}
}

// TestWantGrantsCoverTheStore keeps the expectations honest: every
// DynamoDB call the store can make is expected of someone, and nothing the
// store never calls is.
func TestWantGrantsCoverTheStore(t *testing.T) {
	t.Parallel()
	r, _ := readTemplate(t)
	expected := map[string]bool{}
	for _, g := range r.want {
		for a := range g {
			if strings.HasPrefix(a, "dynamodb:") {
				expected[a] = true
			}
		}
	}
	for _, a := range r.storeActions {
		if !expected[a] {
			t.Errorf("the store calls %s (internal/store/dynamo.go), which wantGrants gives nobody: add it where the code calls it", a)
		}
		delete(expected, a)
	}
	for a := range expected {
		t.Errorf("wantGrants expects %s, which the store never calls", a)
	}
}

// TestResourceARN: every resource callsFile may name maps to the ARN the
// template writes, and anything else is refused rather than guessed.
func TestResourceARN(t *testing.T) {
	t.Parallel()
	for resource, want := range map[string]string{
		"table":                    tableARN,
		"table/index/byConnection": tableARN + "/index/byConnection",
		"POST/@connections/*":      connectionsARN,
		"GET/@connections/*":       apiARN + "GET/@connections/*",
		"*":                        "",
		"arn:aws:dynamodb:us-east-1:123456789012:table/x": "",
		"prod/POST/@connections/*":                        "",
	} {
		got, err := resourceARN(resource)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("resourceARN(%q) = %q, %v; want %q", resource, got, err, want)
		}
	}
}

// TestConnectTokenSecret: the secret comes from Secrets Manager when its
// ARN is given, and its absence turns connect auth off.
func TestConnectTokenSecret(t *testing.T) {
	t.Parallel()
	_, b := readTemplate(t)
	for _, c := range []struct {
		name   string
		params map[string]any
		want   string
	}{
		{"auth off", nil, ""},
		{"from Secrets Manager", map[string]any{"ConnectTokenSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:wsgateway-connect-AbCdEf"},
			"{{resolve:secretsmanager:${ConnectTokenSecretArn}:SecretString}}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			d, err := parseTemplate(b, c.params)
			if err != nil {
				t.Fatal(err)
			}
			f, err := d.GetServerlessFunctionWithName("ConnectFunction")
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Environment.Variables["CONNECT_TOKEN_SECRET"]; got != c.want {
				t.Errorf("CONNECT_TOKEN_SECRET = %q, want %q", got, c.want)
			}
		})
	}
}

// TestChecksCatchBreakage breaks the template in ways that matter and
// wants each caught, with a message that says what is wrong.
func TestChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	r, b := readTemplate(t)
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"wildcard action", "Action: dynamodb:PutItem", "Action: dynamodb:*", `action "dynamodb:*"`},
		{"wildcard resource", "Resource: !GetAtt Table.Arn", `Resource: "*"`, `resource "*"`},
		{"a right the code never uses", "[dynamodb:GetItem, dynamodb:UpdateItem]", "[dynamodb:GetItem, dynamodb:UpdateItem, dynamodb:DeleteItem]",
			"subscribe: may dynamodb:DeleteItem"},
		{"a right the code needs", "[dynamodb:BatchWriteItem, dynamodb:DescribeTable,", "[dynamodb:BatchWriteItem,",
			"PublisherTaskRole: lacks dynamodb:DescribeTable"},
		{"subscribe cannot count its topics", "            # history from the table.\n            - Effect: Allow\n              Action: dynamodb:Query\n",
			"            # history from the table.\n            - Effect: Allow\n              Action: dynamodb:DescribeTable\n", "subscribe: lacks dynamodb:Query"},
		{"subscribe cannot replay", "${WebSocketApi}/${StageName}/POST/@connections/*", "${WebSocketApi}/${StageName}/GET/@connections/*",
			"subscribe: may execute-api:ManageConnections"},
		{"a management call the code never makes", "${Stage}/POST/@connections/*", "${Stage}/DELETE/@connections/*", "publish: may execute-api:ManageConnections"},
		{"index read on the whole table", `Resource: !Sub "${Table.Arn}/index/byConnection"`, "Resource: !GetAtt Table.Arn",
			"disconnect: may dynamodb:Query on [\"${Table.Arn}\"]"},
		{"posting to any stage", "${WebSocketApi}/${Stage}/POST/@connections/*", "${WebSocketApi}/*/POST/@connections/*",
			"may execute-api:ManageConnections"},
		{"managed policy", "      Policies:\n        - PolicyName: publisher", "      ManagedPolicyArns: [arn:aws:iam::aws:policy/AmazonDynamoDBFullAccess]\n      Policies:\n        - PolicyName: publisher",
			"managed policies escape"},
		{"trust beyond ECS", "Service: ecs-tasks.amazonaws.com", "Service: ec2.amazonaws.com", "assumable by ecs-tasks.amazonaws.com only"},
		{"x86", "Architectures: [arm64]", "Architectures: [x86_64]", "want [arm64]"},
		{"old runtime", "Runtime: provided.al2023", "Runtime: provided.al2", "want provided.al2023"},
		{"a Lambda left out", "CodeUri: ../build/unsubscribe/", "CodeUri: ../build/unsub/", "lambdas/unsubscribe has no function"},
		{"wrong route key", "RouteKey: unsubscribe", "RouteKey: unsub", `no route "unsubscribe"`},
		{"no answer frame", "      RouteKey: subscribe\n      RouteResponseSelectionExpression: $default\n", "      RouteKey: subscribe\n",
			"route subscribe: clients get no answer frame"},
		{"invoke from any API", "${WebSocketApi}/${Stage}/$connect", "*/$connect", "no permission for API Gateway"},
		{"ping costs a Lambda", "IntegrationType: MOCK", "IntegrationType: AWS_PROXY", "want a MOCK integration"},
		{"wrong pong", `$default: '{"type":"pong"}'`, `$default: '{"type":"ping"}'`, `template is {"type":"pong"}`},
		{"publish without failure reports", "FunctionResponseTypes: [ReportBatchItemFailures]", "BisectBatchOnFunctionError: true", "ReportBatchItemFailures"},
		{"unknown setting", "          APIGW_ENDPOINT:", "          APIGW_URL:", "APIGW_URL is not a setting"},
		{"reserved variable", "          TABLE_NAME: !Ref Table\n      Policies:\n        - Version: \"2012-10-17\"\n          Statement:\n            - Effect: Allow\n              Action: dynamodb:BatchWriteItem",
			"          TABLE_NAME: !Ref Table\n          AWS_REGION: eu-west-1\n      Policies:\n        - Version: \"2012-10-17\"\n          Statement:\n            - Effect: Allow\n              Action: dynamodb:BatchWriteItem",
			"AWS_REGION is Lambda's to set"},
		{"TTL on another attribute", "AttributeName: expiresAt\n        Enabled: true", "AttributeName: ttl\n        Enabled: true", "Table.TimeToLiveSpecification"},
		{"index keyed differently", "            - {AttributeName: sk, KeyType: HASH}\n            - {AttributeName: pk, KeyType: RANGE}",
			"            - {AttributeName: pk, KeyType: HASH}\n            - {AttributeName: sk, KeyType: RANGE}", "Table.GlobalSecondaryIndexes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if !strings.Contains(string(b), c.old) {
				t.Fatalf("template.yaml no longer contains %q: update this case", c.old)
			}
			d, err := parseTemplate([]byte(strings.Replace(string(b), c.old, c.new, 1)), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := d.check(r)
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, c.want) }) {
				t.Errorf("not caught: want a problem containing %q, got:\n%s", c.want, strings.Join(got, "\n"))
			}
		})
	}
}
