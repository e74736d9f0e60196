package metrics_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/gochat/im-infra/modules/metrics"
)

// echoService is a hand-written gRPC service on emptypb messages: Ok and
// Fail (unary) and Count (server streaming, three messages).
var echoService = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Ok", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			return &emptypb.Empty{}, nil
		}},
		{MethodName: "Fail", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			return nil, status.Error(codes.Internal, "boom")
		}},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Count", ServerStreams: true, Handler: func(_ any, s grpc.ServerStream) error {
			if err := s.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			for range 3 {
				if err := s.SendMsg(&emptypb.Empty{}); err != nil {
					return err
				}
			}
			return nil
		}},
	},
}

// serveEcho runs echoService instrumented by p and returns a client
// connection instrumented by p.
func serveEcho(t *testing.T, p *metrics.Provider) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(p.GRPCServerOptions()...)
	srv.RegisterService(&echoService, struct{}{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		append(p.GRPCDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
	})
	return conn
}

func TestGRPCUnaryAndStreaming(t *testing.T) {
	ctx := context.Background()
	p, sink := tracing(t)
	conn := serveEcho(t, p)

	for range 2 {
		require.NoError(t, conn.Invoke(ctx, "/test.Echo/Ok", &emptypb.Empty{}, &emptypb.Empty{}))
	}
	err := conn.Invoke(ctx, "/test.Echo/Fail", &emptypb.Empty{}, &emptypb.Empty{})
	require.Equal(t, codes.Internal, status.Code(err))

	stream, err := conn.NewStream(ctx, &echoService.Streams[0], "/test.Echo/Count")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
	require.NoError(t, stream.CloseSend())
	received := 0
	for {
		err := stream.RecvMsg(new(emptypb.Empty))
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		received++
	}
	require.Equal(t, 3, received)

	const server, client = "rpc_server_call_duration_seconds", "rpc_client_call_duration_seconds"
	call := func(method, code string) map[string]string {
		return map[string]string{"rpc_method": method, "rpc_response_status_code": code, "rpc_system_name": "grpc"}
	}
	// The server records a call when its stats handler sees the end, which
	// may come after the client has the answer.
	var fams families
	require.Eventually(t, func() bool {
		fams = scrape(t, p.Handler())
		return fams.value(server, call("test.Echo/Ok", "OK")) == 2 &&
			fams.value(server, call("test.Echo/Fail", "INTERNAL")) == 1 &&
			fams.value(server, call("test.Echo/Count", "OK")) == 1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 2.0, fams.value(server, call("test.Echo/Ok", "OK")))
	assert.Equal(t, 1.0, fams.value(server, call("test.Echo/Count", "OK")), "streaming calls are counted")
	failed := call("test.Echo/Fail", "INTERNAL")
	assert.Equal(t, 1.0, fams.value(server, failed))
	assert.Equal(t, "INTERNAL", labelMap(fams.sample(server, failed))["error_type"], "a server error carries error_type")
	assert.Equal(t, "", labelMap(fams.sample(server, call("test.Echo/Ok", "OK")))["error_type"])
	assert.Equal(t, 2.0, fams.value(client, call("test.Echo/Ok", "OK")))
	assert.Equal(t, 1.0, fams.value(client, call("test.Echo/Count", "OK")))
	assert.Equal(t, 1.0, fams.value(client, call("test.Echo/Fail", "INTERNAL")))
	checkAgainstTable(t, readmeTable(t), fams)

	require.NoError(t, p.Flush(ctx))
	spans := sink.spans(t)
	// Each client span has the server span of its own call as a child, in
	// the same trace. Spans are paired by parent, not by export order: a
	// server span can end after the client's next call.
	for name, calls := range map[string]int{"test.Echo/Ok": 2, "test.Echo/Fail": 1, "test.Echo/Count": 1} {
		var clients, servers []exportedSpan
		for _, s := range byName(spans, name) {
			switch s.SpanKind {
			case spanKindServer:
				servers = append(servers, s)
			case spanKindClient:
				clients = append(clients, s)
			}
		}
		require.Len(t, clients, calls, name)
		require.Len(t, servers, calls, name)
		for _, cli := range clients {
			i := slices.IndexFunc(servers, func(srv exportedSpan) bool { return srv.Parent.SpanID == cli.SpanContext.SpanID })
			require.NotEqual(t, -1, i, "%s: the server span is a child of the client span", name)
			assert.Equal(t, cli.SpanContext.TraceID, servers[i].SpanContext.TraceID, "%s: one trace across the call", name)
		}
	}
}
