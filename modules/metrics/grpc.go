package metrics

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
)

// GRPCServerOptions instrument a gRPC server, unary and streaming calls
// alike: a server span per call (continuing the caller's trace context)
// and rpc.server.call.duration by method and status code (error.type set
// for the codes that mean the server failed).
//
//	srv := grpc.NewServer(p.GRPCServerOptions()...)
func (p *Provider) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(p.grpcOptions()...))}
}

// GRPCDialOptions instrument a gRPC client connection, unary and
// streaming: a client span per call, the trace context in the metadata and
// rpc.client.call.duration by method, status code and server.
//
//	conn, err := grpc.NewClient(target, append(p.GRPCDialOptions(), creds)...)
func (p *Provider) GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(p.grpcOptions()...))}
}

func (p *Provider) grpcOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithMeterProvider(&p.meters),
		otelgrpc.WithTracerProvider(&p.tracers),
		otelgrpc.WithPropagators(p.prop),
	}
}
