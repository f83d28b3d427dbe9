// Command lambdazip packs each Lambda directory it is given, holding a
// bootstrap, into a .zip beside it: build/connect becomes build/connect.zip.
//
// The archives are reproducible: entries sorted, times fixed, modes kept
// (bootstrap must stay executable). The same binary gives the same bytes,
// so an unchanged function keeps its CodeSha256 and is not redeployed. It
// is Go rather than zip(1), which a fresh machine may lack.
package main

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// epoch is every entry's time: zip cannot store dates before 1980.
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lambdazip DIR...  (writes DIR.zip from DIR/bootstrap and its siblings)")
		os.Exit(2)
	}
	for _, dir := range os.Args[1:] {
		if err := zipDir(dir); err != nil {
			fmt.Fprintln(os.Stderr, "lambdazip:", err)
			os.Exit(1)
		}
	}
}

// zipDir writes dir.zip from the regular files of dir, which must hold an
// executable bootstrap. It writes a temporary file and renames it, so a
// failure leaves no truncated archive behind.
func zipDir(dir string) (err error) {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(filepath.Join(dir, "bootstrap")); err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: want an executable bootstrap (make lambdas builds it)", dir)
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dir), filepath.Base(dir)+".zip.*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw := zip.NewWriter(tmp)
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return fmt.Errorf("%s: %s is not a regular file: a Lambda directory holds its bootstrap and plain files", dir, e.Name())
		}
		if err := add(zw, filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	// CreateTemp made it private; an artifact is for everyone to read.
	if err := errors.Join(zw.Close(), tmp.Chmod(0o644), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dir+".zip")
}

func add(zw *zip.Writer, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	h, err := zip.FileInfoHeader(fi)
	if err != nil {
		return err
	}
	h.Method = zip.Deflate
	h.Modified = epoch
	h.SetMode(fi.Mode().Perm())
	w, err := zw.CreateHeader(h)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}
