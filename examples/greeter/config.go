package greeter

import (
	"fmt"
	"strings"
	"time"

	"github.com/gochat/im-infra/config"
	"github.com/gochat/im-infra/lifecycle"
)

// Config is the greeter's config, component "greeter".
type Config struct {
	// Message is what the greeter says. Live.
	Message string `json:"message"`
	// Interval is how often it says it on its own; 0 turns that off. Live.
	Interval config.Duration `json:"interval"`
	// MaxName bounds the names Greet accepts, in bytes. Live.
	MaxName int `json:"maxName"`
}

// Defaults: "hello" every 5 seconds, names up to 64 bytes.
func (Config) Defaults() Config {
	return Config{Message: "hello", Interval: config.Duration(5 * time.Second), MaxName: 64}
}

// MinInterval keeps a typo ("5ms") from flooding the log.
const MinInterval = 100 * time.Millisecond

// Validate reports the first unusable field.
func (c Config) Validate() error {
	switch {
	case strings.TrimSpace(c.Message) == "":
		return lifecycle.ValidationError(ModuleName, "message", "must not be empty")
	case len(c.Message) > 200:
		return lifecycle.ValidationError(ModuleName, "message", fmt.Sprintf("is %d bytes; at most 200", len(c.Message)))
	case c.Interval < 0:
		return lifecycle.ValidationError(ModuleName, "interval", "must not be negative (0 turns the periodic greeting off)")
	case c.Interval > 0 && c.Interval.Std() < MinInterval:
		return lifecycle.ValidationError(ModuleName, "interval", fmt.Sprintf("%s is below the minimum %s", c.Interval, MinInterval))
	case c.MaxName < 1:
		return lifecycle.ValidationError(ModuleName, "maxName", "must be at least 1")
	}
	return nil
}
