package config_test

import (
	"context"
	"fmt"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// A component reads its config through a Value; a change in the source is
// validated, applied and announced to subscribers.
func ExampleValue() {
	id := lifecycle.Identity{Service: "im-repo", Env: "dev", Instance: "i-1"}
	src := config.NewMemorySource()
	src.Set(config.Key("dev", "im-repo", "cache"), []byte(`{"poolSize":20,"timeout":"250ms"}`))

	v := config.NewValue[testConfig]("cache", src, id)
	if err := v.Start(context.Background()); err != nil {
		panic(err)
	}
	defer v.Stop(context.Background())
	fmt.Println(v.Get().PoolSize, v.Get().Timeout)

	// A subscriber gets the current value at once, then every change.
	changed := make(chan struct{}, 2)
	cancel := v.Subscribe(func(old, new testConfig) {
		fmt.Println("poolSize", old.PoolSize, "->", new.PoolSize)
		changed <- struct{}{}
	})
	defer cancel()
	<-changed
	src.Set(config.Key("dev", "im-repo", "cache"), []byte(`{"poolSize":30}`))
	<-changed
	// Output:
	// 20 250ms
	// poolSize 20 -> 20
	// poolSize 20 -> 30
}

// Parse checks a document without a source, as a tool would before writing it.
func ExampleParse() {
	_, err := config.Parse[testConfig]("cache", config.Layer{
		Key:  "/config/dev/im-repo/cache",
		Data: []byte(`{"poolsize":20}`),
	})
	fmt.Println(err)
	// Output:
	// cache: decode [CONFIG] field "poolsize": key /config/dev/im-repo/cache: unknown field
}

func ExampleSecret() {
	s := config.Secret("hunter2")
	fmt.Printf("%v %s %q\n", s, s, s)
	// Output:
	// ****** ****** ******
}
