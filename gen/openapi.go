// Package gen holds buf's output (gen/go, gen/openapiv2, gen/ts) and embeds
// the parts that are not Go, so servers can serve them without files on
// disk. This file is hand-written; everything below gen/*/ is generated.
package gen

import _ "embed"

// OpenAPI is the OpenAPI v2 description of the REST facade.
//
//go:embed openapiv2/wsgateway.swagger.json
var OpenAPI []byte
