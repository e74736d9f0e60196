// Package clogtest observes what code logs, for tests: a standalone
// observed logger, or a tee of a whole fx app's logging (which follows every
// config change the app applies), with assertions on messages, fields and
// secrets.
package clogtest
