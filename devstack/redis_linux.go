package devstack

import "syscall"

// dieWithParent makes the kernel kill a child server when the process that
// started it dies, so a crashed or timed-out test leaves no server behind.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
