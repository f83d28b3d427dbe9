//go:build !linux

package dynalite

import "os/exec"

// Process groups and parent-death signals are Linux facts; elsewhere the
// harness kills the node process alone.
func setProcAttr(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
}
