package clog

import (
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/gochat/im-infra/lifecycle"
)

// fileSink is a rotating log file together with the settings it was opened
// with, so Apply can tell whether a new config may keep writing to it.
//
// lumberjack starts one goroutine per file on first write and never stops
// it; keeping the sink across Applies with unchanged file settings keeps
// that at one per file configuration.
type fileSink struct {
	cfg FileConfig
	*lumberjack.Logger
}

// openFileSink creates the file (and its directory) now, so a bad path is
// reported by Apply instead of being lost on the first write.
func openFileSink(cfg FileConfig) (*fileSink, error) {
	lj := &lumberjack.Logger{
		Filename:   cfg.Path,
		MaxSize:    cfg.MaxSizeMB,
		MaxBackups: cfg.MaxBackups,
		MaxAge:     cfg.MaxAgeDays,
		Compress:   cfg.Compress,
	}
	// An empty write opens the file without writing anything.
	if _, err := lj.Write(nil); err != nil {
		_ = lj.Close()
		return nil, lifecycle.ConfigError("clog", "file.path", "cannot open log file", err)
	}
	return &fileSink{cfg: cfg, Logger: lj}, nil
}
