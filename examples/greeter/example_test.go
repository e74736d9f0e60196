package greeter_test

import (
	"fmt"

	"github.com/gochat/im-infra/examples/greeter"
)

// Without fx, a greeter takes a fixed config.
func ExampleNew() {
	g, err := greeter.New(greeter.Config{Message: "hi", MaxName: 8}, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(g.Greet("ann"))
	_, err = g.Greet("a-very-long-name")
	fmt.Println(err)
	// Output:
	// hi, ann <nil>
	// greeter: validate [VALIDATION] field "name": is 16 bytes; at most 8 (maxName)
}
