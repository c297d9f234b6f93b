// Package genfiles writes a generator's output (awsgen, topogen) under its directory.
package genfiles

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// File is the shape of aws.File and topogen.File: a slash-separated name relative to the
// output directory, and the bytes to write there.
type File = struct {
	Name string
	Body []byte
}

// Write writes each file under dir, creating directories as needed, and names every file it
// wrote on stdout. A file that cannot be written does not stop the others; every failure is
// returned, joined. The type parameter lets each generator keep its own File type.
func Write[F ~File](dir string, files []F, stdout io.Writer) error {
	var errs []error
	for _, gf := range files {
		f := File(gf)
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			errs = append(errs, fmt.Errorf("create %s: %w", filepath.Dir(p), err))
			continue
		}
		if err := os.WriteFile(p, f.Body, 0o644); err != nil {
			errs = append(errs, fmt.Errorf("write %s: %w", p, err))
			continue
		}
		fmt.Fprintln(stdout, "wrote", p)
	}
	return errors.Join(errs...)
}
