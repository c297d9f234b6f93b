package audit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"time"
)

// Follow reads every decision already in the files at paths and then those appended later,
// calling emit for each, until ctx is done. It polls (every interval) rather than using
// inotify: the console runs beside a dev stack, a fraction of a second is well inside the
// two seconds a decision may take to appear, and polling works the same on every file
// system. A file that does not exist yet is waited for; a file that shrinks or is replaced
// (a restarted stack truncates or recreates its logs) is read again from its start.
// Lines that are not decisions are skipped; malformed decision lines are passed to bad.
func Follow(ctx context.Context, paths []string, interval time.Duration, emit func(Decision), bad func(path string, err error)) {
	followers := make([]*follower, len(paths))
	for i, p := range paths {
		followers[i] = &follower{path: p}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, f := range followers {
			f.poll(emit, bad)
		}
		select {
		case <-ctx.Done():
			for _, f := range followers {
				f.close()
			}
			return
		case <-t.C:
		}
	}
}

type follower struct {
	path    string
	f       *os.File
	info    os.FileInfo
	off     int64
	partial []byte // an incomplete last line, kept until its newline arrives
	skip    bool   // inside an over-long line: drop bytes until the next newline
}

func (f *follower) close() {
	if f.f != nil {
		f.f.Close()
		f.f = nil
	}
}

func (f *follower) poll(emit func(Decision), bad func(string, error)) {
	st, err := os.Stat(f.path)
	if err != nil {
		f.close()
		return
	}
	if f.f != nil && (!os.SameFile(st, f.info) || st.Size() < f.off) {
		f.close() // replaced or truncated: start again
	}
	if f.f == nil {
		fh, err := os.Open(f.path)
		if err != nil {
			return
		}
		f.f, f.info, f.off, f.partial, f.skip = fh, st, 0, nil, false
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := f.f.ReadAt(buf, f.off)
		if n > 0 {
			f.off += int64(n)
			f.consume(buf[:n], emit, bad)
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && bad != nil {
				bad(f.path, err)
			}
			return
		}
	}
}

func (f *follower) consume(b []byte, emit func(Decision), bad func(string, error)) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if f.skip {
				return
			}
			f.partial = append(f.partial, b...)
			if len(f.partial) > MaxLine {
				// Not a decision line: drop it, and everything up to its end.
				f.partial, f.skip = nil, true
			}
			return
		}
		chunk := b[:i]
		b = b[i+1:]
		if f.skip {
			f.skip = false
			continue
		}
		line := chunk
		if len(f.partial) > 0 {
			line = append(f.partial, chunk...)
			f.partial = nil
		}
		d, err := Parse(line)
		switch {
		case err == nil:
			emit(d)
		case errors.Is(err, ErrNotDecision):
		default:
			if bad != nil {
				bad(f.path, err)
			}
		}
	}
}
