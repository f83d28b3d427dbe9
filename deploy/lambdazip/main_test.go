package main

import (
	"archive/zip"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lambdaDir makes dir/name holding files (name → mode, content = name).
func lambdaDir(t *testing.T, files map[string]os.FileMode) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "connect")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name+" content"), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestZipDir(t *testing.T) {
	t.Parallel()
	dir := lambdaDir(t, map[string]os.FileMode{"bootstrap": 0o755, "config.json": 0o644})
	if err := zipDir(dir); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(dir + ".zip")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir + ".zip"); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o644 {
		t.Errorf("archive mode %v, want -rw-r--r--", fi.Mode())
	}

	zr, err := zip.NewReader(bytes.NewReader(first), int64(len(first)))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name string
		mode os.FileMode
	}{{"bootstrap", 0o755}, {"config.json", 0o644}}
	if len(zr.File) != len(want) {
		t.Fatalf("%d entries, want %d", len(zr.File), len(want))
	}
	for i, f := range zr.File {
		if f.Name != want[i].name || f.Mode() != want[i].mode || !f.Modified.Equal(epoch) {
			t.Errorf("entry %d: %s %v %v, want %s %v %v", i, f.Name, f.Mode(), f.Modified, want[i].name, want[i].mode, epoch)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(b) != f.Name+" content" {
			t.Errorf("%s: content %q, %v", f.Name, b, err)
		}
	}

	// A rebuild with a new modification time packs the same bytes.
	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "bootstrap"), later, later); err != nil {
		t.Fatal(err)
	}
	if err := zipDir(dir); err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(dir + ".zip")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("zipping the same files twice gave different archives")
	}
}

func TestZipDirRefuses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		files map[string]os.FileMode
		want  string
	}{
		{"no bootstrap", map[string]os.FileMode{"main": 0o755}, "want an executable bootstrap"},
		{"bootstrap not executable", map[string]os.FileMode{"bootstrap": 0o644}, "want an executable bootstrap"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := lambdaDir(t, c.files)
			err := zipDir(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("zipDir = %v, want an error containing %q", err, c.want)
			}
			assertNoZip(t, dir)
		})
	}

	t.Run("a subdirectory", func(t *testing.T) {
		t.Parallel()
		dir := lambdaDir(t, map[string]os.FileMode{"bootstrap": 0o755})
		if err := os.Mkdir(filepath.Join(dir, "lib"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := zipDir(dir); err == nil || !strings.Contains(err.Error(), "lib is not a regular file") {
			t.Fatalf("zipDir = %v, want the subdirectory refused", err)
		}
		assertNoZip(t, dir)
	})

	t.Run("a missing directory", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "missing")
		if err := zipDir(dir); err == nil {
			t.Fatal("zipDir of a missing directory succeeded")
		}
		assertNoZip(t, dir)
	})
}

// assertNoZip wants neither dir.zip nor a temporary file left beside dir.
func assertNoZip(t *testing.T, dir string) {
	t.Helper()
	left, err := filepath.Glob(dir + ".zip*")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
