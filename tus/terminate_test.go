package tus

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

func existing(dir, id string) []string {
	var out []string
	for _, name := range []string{id, id + ".info", id + ".sha256"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			out = append(out, name)
		}
	}
	return out
}

func TestTerminateIfAndStrays(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := New(Config{Dir: dir, BasePath: "/files/", Finalize: func(Completed) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	newID := func() string {
		up, err := s.Store().NewUpload(ctx, handler.FileInfo{Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := up.GetInfo(ctx)
		return info.ID
	}

	id := newID()
	removed, err := s.TerminateIf(ctx, id, func(u Upload) bool { return u.Complete() })
	if err != nil || removed || len(existing(dir, id)) != 3 {
		t.Fatalf("cond false: removed=%v err=%v left=%v", removed, err, existing(dir, id))
	}
	removed, err = s.TerminateIf(ctx, id, func(u Upload) bool { return !u.Complete() && u.Size == 10 })
	if err != nil || !removed || len(existing(dir, id)) != 0 {
		t.Fatalf("cond true: removed=%v err=%v left=%v", removed, err, existing(dir, id))
	}

	// A removal cut short after the data file: the rest is a stray.
	stray := newID()
	if err := os.Remove(filepath.Join(dir, stray)); err != nil {
		t.Fatal(err)
	}
	ids, err := s.UploadIDs()
	if got := s.Strays(ids); err != nil || len(got) != 1 || got[0] != stray {
		t.Fatalf("strays %v %v", got, err)
	}
	if err := s.Terminate(ctx, stray); err != nil || len(existing(dir, stray)) != 0 {
		t.Fatalf("terminate stray: %v, left %v", err, existing(dir, stray))
	}
	ids, _ = s.UploadIDs()
	if got := s.Strays(ids); len(got) != 0 {
		t.Fatalf("strays after terminate: %v", got)
	}
	if err := s.Terminate(ctx, stray); err != nil {
		t.Fatalf("terminating what is gone: %v", err)
	}
}
