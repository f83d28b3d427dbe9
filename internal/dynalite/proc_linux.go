package dynalite

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts dynalite in its own process group, so killGroup reaches
// anything it spawns, and has the kernel kill it if the test binary dies
// without running cleanups (a panic or a -timeout).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(cmd *exec.Cmd) {
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}
