package cache

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type userID int64

type level string

func TestEncode(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		in   any
		want string
	}{
		{"string", "héllo", "héllo"},
		{"bytes", []byte{0, 255}, "\x00\xff"},
		{"int", 42, "42"},
		{"negative int64", int64(-7), "-7"},
		{"int8", int8(-8), "-8"},
		{"uint64", uint64(18446744073709551615), "18446744073709551615"},
		{"uint16", uint16(65535), "65535"},
		{"float64", 1.5, "1.5"},
		{"float32", float32(0.1), "0.1"},
		{"true", true, "1"},
		{"false", false, "0"},
		{"named int", userID(9), "9"},
		{"named string", level("gold"), "gold"},
		{"duration", 1500 * time.Millisecond, "1500000000"},
		{"time (MarshalJSON)", at, `"2026-11-26T10:00:00Z"`},
		{"struct", user{ID: 1, Name: "ann"}, `{"id":1,"name":"ann"}`},
		{"pointer", &user{ID: 2}, `{"id":2,"name":""}`},
		{"map", map[string]int{"a": 1}, `{"a":1}`},
		{"slice", []string{"x", "y"}, `["x","y"]`},
		{"nil pointer", (*user)(nil), "null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestEncodeRefusesWhatJSONCannotEncode(t *testing.T) {
	type loop struct{ Self *loop }
	l := &loop{}
	l.Self = l
	for name, v := range map[string]any{
		"chan": make(chan int), "func": func() {}, "complex": 1i, "cycle": l,
		"map with func values": map[string]any{"f": func() {}}, "untyped nil": nil,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Encode(v)
			require.Error(t, err)
		})
	}
}

func TestDecodeRoundTrips(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	round := func(t *testing.T, in, out any) {
		t.Helper()
		s, err := Encode(in)
		require.NoError(t, err)
		require.NoError(t, Decode(s, out))
	}
	var (
		s   string
		b   []byte
		i   int
		i64 int64
		u8  uint8
		f   float64
		f32 float32
		ok  bool
		id  userID
		lv  level
		d   time.Duration
		tm  time.Time
		u   user
		m   map[string]int
	)
	round(t, "x", &s)
	assert.Equal(t, "x", s)
	round(t, []byte{1, 2}, &b)
	assert.Equal(t, []byte{1, 2}, b)
	round(t, -3, &i)
	assert.Equal(t, -3, i)
	round(t, int64(1)<<60, &i64)
	assert.Equal(t, int64(1)<<60, i64)
	round(t, uint8(200), &u8)
	assert.Equal(t, uint8(200), u8)
	round(t, 2.25, &f)
	assert.InDelta(t, 2.25, f, 0)
	round(t, float32(0.5), &f32)
	assert.InDelta(t, 0.5, f32, 0)
	round(t, true, &ok)
	assert.True(t, ok)
	round(t, userID(5), &id)
	assert.Equal(t, userID(5), id)
	round(t, level("gold"), &lv)
	assert.Equal(t, level("gold"), lv)
	round(t, time.Minute, &d)
	assert.Equal(t, time.Minute, d)
	round(t, at, &tm)
	assert.True(t, at.Equal(tm))
	round(t, user{ID: 3, Name: "cy"}, &u)
	assert.Equal(t, user{ID: 3, Name: "cy"}, u)
	round(t, map[string]int{"a": 1}, &m)
	assert.Equal(t, map[string]int{"a": 1}, m)

	require.NoError(t, Decode("true", &ok), "bools also accept true/false")
	assert.True(t, ok)
}

func TestDecodeErrors(t *testing.T) {
	var (
		i  int64
		u8 uint8
		ok bool
		u  user
	)
	i = 7
	require.Error(t, Decode("seven", &i))
	assert.Equal(t, int64(7), i, "a failed decode leaves dst alone")
	require.Error(t, Decode("300", &u8), "out of range")
	require.Error(t, Decode("yes", &ok))
	require.Error(t, Decode("{not json", &u))
	require.Error(t, Decode("1", nil))
	require.Error(t, Decode("1", u), "not a pointer")
}
