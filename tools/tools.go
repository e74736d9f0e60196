//go:build tools

// Package tools pins the versions of command-line tools used by the Makefile,
// so `go run` resolves them from go.mod instead of whatever is on PATH.
package tools

import (
	_ "honnef.co/go/tools/cmd/staticcheck"
)
