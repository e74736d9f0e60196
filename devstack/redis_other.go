//go:build !linux

package devstack

import "syscall"

// dieWithParent has no portable equivalent outside Linux; Close (or the
// test's cleanup) stops the server there.
func dieWithParent() *syscall.SysProcAttr { return nil }
