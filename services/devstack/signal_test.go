package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startGroup starts cmd in a process group of its own, as a shell starts a
// foreground job, and returns once the devstack has logged that it serves.
// Its output so far and to come is in the returned buffer; its exit status
// comes on the channel.
func startGroup(t *testing.T, cmd *exec.Cmd, env ...string) (*syncBuffer, <-chan *os.ProcessState) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "WS_ADDR=127.0.0.1:0", "GRPC_ADDR=127.0.0.1:0", "HTTP_ADDR=127.0.0.1:0")
	cmd.Env = append(cmd.Env, env...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	out := &syncBuffer{}
	serving := make(chan struct{})
	go func() {
		var once sync.Once
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			out.WriteLine(sc.Text())
			if strings.Contains(sc.Text(), "publisher listening") {
				once.Do(func() { close(serving) })
			}
		}
	}()
	exited := make(chan *os.ProcessState, 1)
	go func() {
		cmd.Wait()
		pw.Close()
		exited <- cmd.ProcessState
	}()
	select {
	case <-serving:
	case <-time.After(3 * time.Minute): // make run builds first
		t.Fatalf("not serving after 3 minutes:\n%s", out)
	}
	return out, exited
}

// waitExit waits for the process started by startGroup.
func waitExit(t *testing.T, exited <-chan *os.ProcessState, out *syncBuffer) *os.ProcessState {
	t.Helper()
	select {
	case st := <-exited:
		return st
	case <-time.After(30 * time.Second):
		t.Fatalf("still running 30 s after SIGINT:\n%s", out)
		return nil
	}
}

// Ctrl-C sends SIGINT to the whole foreground process group: the devstack
// stops gracefully and exits 0.
func TestInterruptIsACleanStop(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(os.Args[0])
	out, exited := startGroup(t, cmd, "DEVSTACK_MAIN_ARGS=")
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	if st := waitExit(t, exited, out); st.ExitCode() != 0 {
		t.Errorf("exit %v after SIGINT, want 0:\n%s", st, out)
	}
}

// make run: Ctrl-C stops the devstack cleanly, and make reports no error.
// GNU make, which gets the SIGINT too, then ends itself by that signal as
// every interrupted program should (the shell prints nothing for it); what
// must not happen is a failed recipe ("make: *** [run] Error 1").
func TestMakeRunInterrupt(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is not installed: %v", err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "run")
	cmd.Dir = root
	out, exited := startGroup(t, cmd)
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	st := waitExit(t, exited, out)
	ws := st.Sys().(syscall.WaitStatus)
	switch {
	case makeLostItsChild.MatchString(out.String()):
		// GNU make's own race, not the recipe's: when the devstack has
		// stopped before make's SIGINT handler runs (a loaded machine), the
		// main loop's wait has already reaped it and the handler's second
		// wait finds no child, and make exits 2. Seen once in dozens of
		// loaded make test runs.
		t.Logf("make lost the race between its wait and its SIGINT handler (exit %v)", st)
	case !(ws.Exited() && ws.ExitStatus() == 0 || ws.Signaled() && ws.Signal() == syscall.SIGINT):
		t.Errorf("make run ended with %v after SIGINT, want exit 0 or SIGINT:\n%s", st, out)
	}
	if makeFailed.MatchString(makeLostItsChild.ReplaceAllString(out.String(), "")) {
		t.Errorf("make reported a failure after a clean stop:\n%s", out)
	}
}

var (
	// makeFailed is any error line of make's, at any MAKELEVEL (make[1]
	// when the test runs under make test).
	makeFailed = regexp.MustCompile(`(?m)^make(\[\d+\])?: \*\*\*`)
	// makeLostItsChild is make's own wait failing after the recipe ended.
	makeLostItsChild = regexp.MustCompile(`(?m)^make(\[\d+\])?: \*\*\* wait: No child processes\.\s+Stop\.$`)
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) WriteLine(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.WriteString(l + "\n")
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
