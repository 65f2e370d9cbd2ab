package framework

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvTmpfsUnshare set to 1 makes MountTmpfs take its unprivileged path (a user and
// mount namespace) even as root, to test that path.
const EnvTmpfsUnshare = "CAIRN_TEST_TMPFS_UNSHARE"

// Tmpfs is a small tmpfs a test made for one member.
type Tmpfs struct {
	// Dir is where it is mounted, as the member sees it.
	Dir string
	// Path is where the test reaches it: Dir as root, /proc/<pid>/root<Dir> otherwise.
	Path string
}

// MountTmpfs mounts a tmpfs of size (mount's size=, e.g. "96m") on dir for m, a member
// made by NewMember and not started yet. As root it mounts dir itself. Otherwise it
// makes a user and mount namespace (unshare --user --map-root-user --mount), mounts the
// tmpfs there, keeps the namespace alive with a sleeping process, and makes m run inside
// it (nsenter), so every start of m (restarts included) sees the same tmpfs; the test
// reaches it through /proc/<pid>/root. If neither works the test fails: it never skips.
// When the test ends m is killed first, then the tmpfs unmounted.
func MountTmpfs(t testing.TB, m *Member, dir, size string) *Tmpfs {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("tmpfs: %v", err)
	}
	if os.Geteuid() == 0 && os.Getenv(EnvTmpfsUnshare) != "1" {
		if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
			t.Fatalf("tmpfs: mount -t tmpfs -o size=%s tmpfs %s as root: %v", size, dir, err)
		}
		t.Cleanup(func() {
			m.Kill()
			if err := syscall.Unmount(dir, 0); err != nil {
				t.Logf("tmpfs: unmount %s: %v; detaching it", dir, err)
				_ = syscall.Unmount(dir, syscall.MNT_DETACH)
			}
		})
		return &Tmpfs{Dir: dir, Path: dir}
	}
	pid := namespaceHolder(t, m, dir, size)
	wrapper := filepath.Join(m.Dir, "in-namespace.sh")
	script := fmt.Sprintf("#!/bin/sh\nexec nsenter --target %d --user --mount --preserve-credentials -- %q \"$@\"\n", pid, m.Bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o700); err != nil {
		t.Fatalf("tmpfs: %v", err)
	}
	m.Bin = wrapper
	return &Tmpfs{Dir: dir, Path: fmt.Sprintf("/proc/%d/root%s", pid, dir)}
}

// namespaceHolder starts the process that holds the user and mount namespace with the
// tmpfs on dir, and returns its pid once the tmpfs is mounted. It is killed (and the
// namespace, with its tmpfs, gone) when the test ends, after m.
func namespaceHolder(t testing.TB, m *Member, dir, size string) int {
	t.Helper()
	for _, tool := range []string{"unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("tmpfs: not root, and no %s to make a user namespace: %v", tool, err)
		}
	}
	cmd := exec.Command("unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
		`mount -t tmpfs -o size="$1" tmpfs "$2" && echo mounted && exec sleep 1000000`, "sh", size, dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("tmpfs: %v", err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("tmpfs: not root, and unshare --user --map-root-user --mount failed: %v", err)
	}
	t.Cleanup(func() {
		m.Kill()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if strings.TrimSpace(s) != "mounted" {
			t.Fatalf("tmpfs: not root, and mounting a tmpfs in a user namespace failed: %s", stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("tmpfs: the user namespace did not mount its tmpfs within 10s: %s", stderr.String())
	}
	return cmd.Process.Pid
}
