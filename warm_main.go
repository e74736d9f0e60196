//go:build ignore

package main
import (
 _ "go.uber.org/fx"
 _ "go.uber.org/fx/fxtest"
 _ "go.uber.org/zap"
 _ "go.uber.org/goleak"
 _ "github.com/stretchr/testify/require"
 _ "go.etcd.io/etcd/client/v3"
 _ "go.etcd.io/etcd/client/v3/concurrency"
 _ "go.etcd.io/etcd/client/v3/naming/resolver"
 _ "go.etcd.io/etcd/server/v3/embed"
 _ "gopkg.in/natefinch/lumberjack.v2"
 _ "go.opentelemetry.io/otel/trace"
 _ "google.golang.org/grpc"
)
func main(){}
