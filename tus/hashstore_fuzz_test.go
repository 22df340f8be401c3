package tus

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

// FuzzDecodeState: a digest-state slot is read back from disk, where a torn
// write or a bad disk may have left anything. Properties: a slot is
// accepted only with its magic, its size and a CRC that matches; one
// flipped bit in a good slot is always refused; what is accepted encodes
// back to the same state and its digest state never panics the hasher.
func FuzzDecodeState(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, data []byte, flip uint16) {
		if st, ok := decodeState(b); ok {
			if len(b) != stateSlotSize || string(b[:4]) != stateMagic ||
				binary.LittleEndian.Uint32(b[stateSlotSize-4:]) != crc32.Checksum(b[:stateSlotSize-4], castagnoli) {
				t.Fatalf("decodeState accepted a slot without its magic, size or CRC: %x", b)
			}
			if st.Offset < 0 || len(st.State) > stateSlotSize-4-stateHeader {
				t.Fatalf("decodeState: offset %d, state of %d bytes", st.Offset, len(st.State))
			}
			enc, err := encodeState(st)
			if err != nil {
				t.Fatalf("encodeState of a decoded state: %v", err)
			}
			if again, ok := decodeState(enc); !ok || again.Offset != st.Offset || again.Sum != st.Sum || !bytes.Equal(again.State, st.State) {
				t.Fatalf("state %+v does not round-trip: %+v", st, again)
			}
			h := sha256.New()
			if h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.State) == nil {
				h.Write(data)
				h.Sum(nil)
			}
		}

		// A good slot of the digest of data, with one bit flipped.
		h := sha256.New()
		h.Write(data)
		good, err := encodeState(hashState{Offset: int64(len(data)), State: marshalDigest(h)})
		if err != nil {
			t.Fatal(err)
		}
		if st, ok := decodeState(good); !ok || st.Offset != int64(len(data)) {
			t.Fatalf("a good slot is refused")
		}
		bit := int(flip) % (stateSlotSize * 8)
		good[bit/8] ^= 1 << (bit % 8)
		if st, ok := decodeState(good); ok {
			t.Fatalf("a slot with bit %d flipped is accepted: %+v", bit, st)
		}
	})
}

// FuzzStateFile: whatever bytes the <id>.sha256 beside an upload holds,
// the digest of the upload is right unless a slot in it carries a valid
// CRC (the fuzzer cannot forge one; a disk rarely does).
func FuzzStateFile(f *testing.F) {
	s := NewHashStore(f.TempDir())
	data := []byte(strings.Repeat("the bytes of one upload. ", 40))
	up, err := s.NewUpload(context.Background(), handler.FileInfo{Size: int64(len(data))})
	if err != nil {
		f.Fatal(err)
	}
	id := uploadID(up)
	if _, err := up.WriteChunk(context.Background(), 0, bytes.NewReader(data)); err != nil {
		f.Fatal(err)
	}
	want := sha256.Sum256(data)
	f.Fuzz(func(t *testing.T, sidecar []byte) {
		if err := os.WriteFile(filepath.Join(s.dir, id+".sha256"), sidecar, 0o644); err != nil {
			t.Fatal(err)
		}
		for i := 0; i+stateSlotSize <= len(sidecar) && i < 2*stateSlotSize; i += stateSlotSize {
			if _, ok := decodeState(sidecar[i : i+stateSlotSize]); ok {
				return
			}
		}
		u, err := s.GetUpload(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		h, err := u.(*hashUpload).digestAt(context.Background(), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Fatalf("digest %x with a corrupt state file, want %x", got, want)
		}
	})
}

// FuzzValidID: only ids of the form the store issues (32 lower-case hex
// digits) are valid, and a valid id names a file directly in the upload
// directory.
func FuzzValidID(f *testing.F) {
	s := &Server{}
	f.Fuzz(func(t *testing.T, id string) {
		want := len(id) == 32 && strings.Trim(id, "0123456789abcdef") == ""
		if got := s.ValidID(id); got != want {
			t.Fatalf("ValidID(%q) = %v", id, got)
		}
		if want && filepath.Dir(filepath.Join("/uploads", id+".info")) != "/uploads" {
			t.Fatalf("id %q leaves the upload directory", id)
		}
	})
}
