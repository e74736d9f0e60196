package cache

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/gochat/im-infra/lifecycle"
)

// Cmd is one command of a Pipeline: Name, then Keys (given without the
// prefix; the prefix is added), then Args (through Encode). This fits every
// command whose keys come first, e.g. {"SET", {"k"}, {v, "PX", 1000}},
// {"HSET", {"h"}, {"f", v}}, {"ZADD", {"z"}, {1.5, "m"}}. In a cluster the
// keys of one Cmd must share a hash slot; different Cmds may use any slots.
type Cmd struct {
	Name string
	Keys []string
	Args []any
}

// Reply is the outcome of one command run by Eval, EvalSha or Pipeline.
type Reply struct {
	msg rueidis.RedisMessage
	err error
}

// Err is the command's own error: ErrMiss for a nil reply, else an
// InfraError (VALIDATION when Redis rejected the command).
func (r Reply) Err() error { return r.err }

// Text returns a string or number reply as text.
func (r Reply) Text() (string, error) {
	if r.err != nil {
		return "", r.err
	}
	if r.msg.IsInt64() {
		n, _ := r.msg.AsInt64()
		return strconv.FormatInt(n, 10), nil
	}
	return r.msg.ToString()
}

// Int64 returns an integer reply (or a string holding one).
func (r Reply) Int64() (int64, error) {
	if r.err != nil {
		return 0, r.err
	}
	return r.msg.AsInt64()
}

// Float64 returns a float reply (or a string holding one).
func (r Reply) Float64() (float64, error) {
	if r.err != nil {
		return 0, r.err
	}
	return r.msg.AsFloat64()
}

// Strings returns an array reply as strings.
func (r Reply) Strings() ([]string, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.msg.AsStrSlice()
}

// Decode reads a string reply into dst through Decode.
func (r Reply) Decode(dst any) error {
	s, err := r.Text()
	if err != nil {
		return err
	}
	return Decode(s, dst)
}

// Any returns the reply as Go values: string, int64, float64, bool, nil,
// []any or map[string]any.
func (r Reply) Any() (any, error) {
	if r.err != nil {
		return nil, r.err
	}
	return r.msg.ToAny()
}

func replyOf(c command, key string, res rueidis.RedisResult) Reply {
	msg, err := res.ToMessage()
	if err != nil {
		return Reply{err: wrap(c, key, err)}
	}
	if msg.IsNil() {
		return Reply{err: ErrMiss}
	}
	return Reply{msg: msg}
}

// scriptCall builds EVAL or EVALSHA after checking and prefixing keys.
func (c *Client) scriptCall(ctx context.Context, cmd command, body string, keys []string, args []any) (Reply, error) {
	first := ""
	if len(keys) > 0 {
		first = keys[0]
	}
	a, err := encodeAll(cmd, first, args)
	if err != nil {
		return Reply{}, err
	}
	s, l, full, err := c.multi(cmd, keys)
	if err != nil {
		return Reply{}, err
	}
	var rc rueidis.Completed
	if cmd == cmdEval {
		rc = s.rc.B().Eval().Script(body).Numkeys(int64(len(full))).Key(full...).Arg(a...).Build()
	} else {
		rc = s.rc.B().Evalsha().Sha1(body).Numkeys(int64(len(full))).Key(full...).Arg(a...).Build()
	}
	res := c.do(ctx, s, l, cmd, rc)
	if err := res.NonRedisError(); err != nil {
		return Reply{}, wrap(cmd, first, err)
	}
	r := replyOf(cmd, first, res)
	return r, r.err
}

// Eval runs a Lua script. keys are prefixed and, in a cluster, must share
// a hash slot; args go through Encode. A nil reply is ErrMiss; a script
// error is a VALIDATION InfraError (also in Reply.Err).
func (c *Client) Eval(ctx context.Context, script string, keys []string, args ...any) (_ Reply, err error) {
	defer c.handle(ctx, &err)
	return c.scriptCall(ctx, cmdEval, script, keys, args)
}

// EvalSha runs a script loaded with ScriptLoad. An unknown sha1 gives a
// VALIDATION error whose cause starts with NOSCRIPT.
func (c *Client) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) (_ Reply, err error) {
	defer c.handle(ctx, &err)
	return c.scriptCall(ctx, cmdEvalSha, sha1, keys, args)
}

// ScriptLoad loads a script and returns its sha1 for EvalSha. In a cluster
// it is loaded on every node, since any of them may run it.
func (c *Client) ScriptLoad(ctx context.Context, script string) (_ string, err error) {
	defer c.handle(ctx, &err)
	s, l, err := c.acquire()
	if err != nil {
		return "", wrap(cmdScriptLoad, "", err)
	}
	nodes := map[string]rueidis.Client{"": s.rc}
	if s.cluster {
		nodes = s.rc.Nodes()
	}
	var sha string
	for addr, n := range nodes {
		start := time.Now()
		ctx2, span := c.startSpan(ctx, cmdScriptLoad)
		callCtx, cancel := c.bound(ctx2, l.timeout, start)
		res := n.Do(callCtx, n.B().ScriptLoad().Script(script).Build())
		cancel()
		c.observe(ctx2, cmdScriptLoad, start, res.Error(), span)
		v, err := res.ToString()
		if err != nil {
			return "", wrap(cmdScriptLoad, addr, err)
		}
		sha = v
	}
	return sha, nil
}

// isBlocking names commands that would hold a pipelined connection for
// their whole wait; they belong on Client() (rueidis runs them on a pool).
func isBlocking(name string) bool {
	switch name {
	case "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF":
		return true
	}
	return false
}

func checkCmd(i int, cmd Cmd) error {
	name := strings.ToUpper(strings.TrimSpace(cmd.Name))
	switch {
	case name == "":
		return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: commandNames[cmdPipeline],
			Field: fmt.Sprintf("cmds[%d].Name", i), Message: "empty command name"}
	case strings.HasSuffix(name, "SUBSCRIBE"), isBlocking(name):
		return &lifecycle.InfraError{Type: lifecycle.TypeValidation, Component: ModuleName, Op: commandNames[cmdPipeline],
			Field: fmt.Sprintf("cmds[%d].Name", i), Message: name + " blocks a connection; use Client() for it"}
	}
	return nil
}

// Pipeline sends cmds in one round trip (per node, in a cluster) and
// returns one Reply per Cmd, in order. The error is a failure of the whole
// batch (bad input, timeout, connection); a command Redis rejected fails
// only its own Reply. The commands are not a transaction: use Eval for
// atomicity.
func (c *Client) Pipeline(ctx context.Context, cmds ...Cmd) (_ []Reply, err error) {
	defer c.handle(ctx, &err)
	if len(cmds) == 0 {
		return nil, nil
	}
	s, l, err := c.acquire()
	if err != nil {
		return nil, wrap(cmdPipeline, "", err)
	}
	built := make([]rueidis.Completed, len(cmds))
	for i, cmd := range cmds {
		if err := checkCmd(i, cmd); err != nil {
			return nil, err
		}
		first := ""
		if len(cmd.Keys) > 0 {
			first = cmd.Keys[0]
		}
		full := l.fullKeys(cmd.Keys)
		if err := s.sameSlot(cmdPipeline, full, cmd.Keys); err != nil {
			return nil, err
		}
		args, err := encodeAll(cmdPipeline, first, cmd.Args)
		if err != nil {
			return nil, err
		}
		built[i] = s.rc.B().Arbitrary(strings.Fields(cmd.Name)...).Keys(full...).Args(args...).Build()
	}
	results := c.doMulti(ctx, s, l, cmdPipeline, built)
	out := make([]Reply, len(results))
	for i, res := range results {
		if err := res.NonRedisError(); err != nil {
			return nil, wrap(cmdPipeline, "", err)
		}
		first := ""
		if len(cmds[i].Keys) > 0 {
			first = cmds[i].Keys[0]
		}
		out[i] = replyOf(cmdPipeline, first, res)
	}
	return out, nil
}
