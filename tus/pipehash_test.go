package tus

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
	"time"
)

// Bodies that arrive in odd pieces, across many pipeline blocks, hash to
// the same sum as the bytes themselves, without reading anything back.
func TestPipelineOddReads(t *testing.T) {
	data := random(t, 3<<20+12345)
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"one byte at a time for a while": func(r io.Reader) io.Reader {
			return io.MultiReader(iotest.OneByteReader(io.LimitReader(r, 5000)), r)
		},
		"half reads":    iotest.HalfReader,
		"data with EOF": iotest.DataErrReader,
	} {
		t.Run(name, func(t *testing.T) {
			s := NewHashStore(t.TempDir())
			up := newUpload(t, s, int64(len(data)))
			info, _ := up.GetInfo(context.Background())
			n, err := write(t, s, info.ID, 0, wrap(bytes.NewReader(data)))
			if err != nil || n != int64(len(data)) {
				t.Fatalf("write = %d, %v", n, err)
			}
			if got := finishSum(t, s, up); got != sum(data) {
				t.Fatalf("sha256 = %s, want %s", got, sum(data))
			}
			if r := s.BytesRehashed(); r != 0 {
				t.Fatalf("re-read %d bytes, want 0", r)
			}
		})
	}
}

// The state is saved in two slots, alternately: when the newest is torn
// (or lost), the previous one is used and only the bytes after it are read
// back.
func TestTornStateSlotFallsBack(t *testing.T) {
	dir := t.TempDir()
	s := NewHashStore(dir)
	data := random(t, 900_000)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	for _, r := range [][2]int{{0, 300_000}, {300_000, 700_000}} {
		if _, err := write(t, s, info.ID, int64(r[0]), bytes.NewReader(data[r[0]:r[1]])); err != nil {
			t.Fatal(err)
		}
	}
	// Slot 0 held the empty state, slot 1 the state at 300,000, slot 0
	// now the one at 700,000: tear it.
	path := filepath.Join(dir, info.ID+".sha256")
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 2*stateSlotSize {
		t.Fatalf("state file: %d bytes, %v", len(b), err)
	}
	if st, ok := decodeState(b[:stateSlotSize]); !ok || st.Offset != 700_000 {
		t.Fatalf("slot 0 = %+v, %v; want offset 700000", st, ok)
	}
	b[100] ^= 0xff
	os.WriteFile(path, b, 0o644)
	if _, err := write(t, s, info.ID, 700_000, bytes.NewReader(data[700_000:])); err != nil {
		t.Fatal(err)
	}
	if got := finishSum(t, s, up); got != sum(data) {
		t.Fatalf("sha256 = %s, want %s", got, sum(data))
	}
	if r := s.BytesRehashed(); r != 400_000 {
		t.Fatalf("re-read %d bytes, want the 400000 after the older slot", r)
	}
}

// A write that fails (here: a full device) leaves the saved state where it
// was: the digest saw bytes the file did not get.
func TestWriteErrorKeepsState(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	dir := t.TempDir()
	s := NewHashStore(dir)
	data := random(t, 1<<20)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	if _, err := write(t, s, info.ID, 0, bytes.NewReader(data[:100_000])); err != nil {
		t.Fatal(err)
	}
	u, _ := s.GetUpload(context.Background(), info.ID)
	good, ok := u.(*hashUpload).loadState(100_000)
	if !ok || good.Offset != 100_000 {
		t.Fatalf("state after the first write = %+v, %v", good, ok)
	}
	// Put /dev/full, where every write fails with ENOSPC, in place of the
	// upload's data file.
	dataPath := filepath.Join(dir, info.ID)
	if err := os.Remove(dataPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/full", dataPath); err != nil {
		t.Fatal(err)
	}

	n, err := write(t, s, info.ID, 100_000, bytes.NewReader(data[100_000:]))
	if err == nil || n != 0 {
		t.Fatalf("write = %d, %v; want 0 and an error", n, err)
	}
	u, _ = s.GetUpload(context.Background(), info.ID)
	st, ok := u.(*hashUpload).loadState(1 << 20)
	if !ok || st.Offset != good.Offset || !bytes.Equal(st.State, good.State) {
		t.Fatalf("state after a failed write = %+v, %v; want the one before it", st, ok)
	}
}

func TestFinishTiming(t *testing.T) {
	s := NewHashStore(t.TempDir())
	if ft := s.LastFinish(); ft.UploadID != "" {
		t.Fatalf("LastFinish before any upload = %+v", ft)
	}
	data := random(t, 100_000)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	u, _ := s.GetUpload(context.Background(), info.ID)
	if _, err := u.WriteChunk(context.Background(), 0, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := u.FinishUpload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ft := s.LastFinish()
	if ft.UploadID != info.ID || ft.LastByte.IsZero() || ft.Sync <= 0 {
		t.Fatalf("LastFinish = %+v; want upload %s with its last byte time and sync time", ft, info.ID)
	}
}

// Blocks shrink as writes run at once, so their memory stays within the
// budget until the smallest size is reached.
func TestBlockBudget(t *testing.T) {
	if got := blockShift(1); got != maxBlockShift {
		t.Fatalf("one write: block 1<<%d, want 1<<%d", got, maxBlockShift)
	}
	prev := maxBlockShift
	for active := int64(1); active <= 1000; active++ {
		s := blockShift(active)
		if s > prev || s < minBlockShift {
			t.Fatalf("%d writes: block 1<<%d after 1<<%d", active, s, prev)
		}
		if s > minBlockShift && active*pipeBlocks<<s > blockBudget {
			t.Fatalf("%d writes of %d blocks of 1<<%d exceed the budget", active, pipeBlocks, s)
		}
		prev = s
	}
}

// A client that stalls mid-body does not leave received bytes waiting in a
// half-filled block: what arrived is in the file while the read waits.
func TestPipelineWritesWhatArrivedBeforeAStall(t *testing.T) {
	dir := t.TempDir()
	s := NewHashStore(dir)
	data := random(t, 1<<20)
	up := newUpload(t, s, int64(len(data)))
	info, _ := up.GetInfo(context.Background())
	const sent = 300_000 // not a multiple of any block size
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := write(t, s, info.ID, 0, pr)
		done <- err
	}()
	if _, err := pw.Write(data[:sent]); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, info.ID)
	deadline := time.Now().Add(5 * time.Second)
	for {
		var size int64
		if st, err := os.Stat(path); err == nil {
			size = st.Size()
		}
		if size == sent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file holds %d bytes while the client stalls, want %d", size, sent)
		}
		time.Sleep(5 * time.Millisecond)
	}
	pw.Write(data[sent:])
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := finishSum(t, s, up); got != sum(data) {
		t.Fatalf("sha256 = %s, want %s", got, sum(data))
	}
}
