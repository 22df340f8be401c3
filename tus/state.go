package tus

import (
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"os"
)

// hashState is what is saved beside an upload after every write: the
// SHA-256 digest state of the first Offset bytes, and once the upload is
// complete, the final hex digest.
type hashState struct {
	Offset int64
	State  []byte // the digest's MarshalBinary
	Sum    string // lower-case hex, once complete
}

// digest returns a SHA-256 digest resumed from the state, if the state is
// one: the marshaled digest must have hashed exactly Offset bytes (its
// last 8 bytes count them, big-endian), so a state whose offset and digest
// disagree is never continued.
func (st hashState) digest() (hash.Hash, bool) {
	if len(st.State) < 8 || binary.BigEndian.Uint64(st.State[len(st.State)-8:]) != uint64(st.Offset) {
		return nil, false
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(st.State); err != nil {
		return nil, false
	}
	return h, true
}

func marshalDigest(h hash.Hash) []byte {
	b, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		// sha256's digest always marshals; anything else is a programming error.
		panic(err)
	}
	return b
}

// The digest state lives in <id>.sha256 in two fixed-size slots, written
// alternately in place: a save never overwrites the slot holding the state
// it continues from, and every slot carries a CRC, so a torn or lost write
// leaves the previous state usable. (Writing in place is much cheaper than
// a temporary file and a rename, which on ext4 starts writeback of the new
// file and waits on the journal: per PATCH that cost more than the hashing.)
// On S3 the file lives in the local upload directory, named by the object
// id, and each save covers the parts the bucket has accepted.
//
// Slot layout: magic "tsh1", offset (int64), complete flag (1 byte), the
// SHA-256 sum (32 bytes), state length (uint16), the marshaled digest, and
// a CRC-32C of everything before it in the last 4 bytes.
const (
	stateSlotSize = 256
	stateMagic    = "tsh1"
	stateHeader   = 4 + 8 + 1 + sha256.Size + 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func encodeState(st hashState) ([]byte, error) {
	b := make([]byte, stateSlotSize)
	if len(st.State) > stateSlotSize-4-stateHeader || st.Offset < 0 {
		return nil, errors.New("digest state does not fit its slot")
	}
	copy(b, stateMagic)
	binary.LittleEndian.PutUint64(b[4:], uint64(st.Offset))
	if st.Sum != "" {
		raw, err := hex.DecodeString(st.Sum)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("bad sum %q", st.Sum)
		}
		b[12] = 1
		copy(b[13:], raw)
	}
	binary.LittleEndian.PutUint16(b[stateHeader-2:], uint16(len(st.State)))
	copy(b[stateHeader:], st.State)
	binary.LittleEndian.PutUint32(b[stateSlotSize-4:], crc32.Checksum(b[:stateSlotSize-4], castagnoli))
	return b, nil
}

func decodeState(b []byte) (hashState, bool) {
	if len(b) != stateSlotSize || string(b[:4]) != stateMagic ||
		binary.LittleEndian.Uint32(b[stateSlotSize-4:]) != crc32.Checksum(b[:stateSlotSize-4], castagnoli) {
		return hashState{}, false
	}
	n := int(binary.LittleEndian.Uint16(b[stateHeader-2:]))
	st := hashState{Offset: int64(binary.LittleEndian.Uint64(b[4:]))}
	if st.Offset < 0 || n > stateSlotSize-4-stateHeader {
		return hashState{}, false
	}
	st.State = append([]byte(nil), b[stateHeader:stateHeader+n]...)
	if b[12] == 1 {
		st.Sum = hex.EncodeToString(b[13 : 13+sha256.Size])
	}
	return st, true
}

// stateFile is one upload's digest state file, as one handle sees it.
type stateFile struct {
	path string
	// slot is the slot this handle last read or wrote (-1: none).
	slot int
}

func newStateFile(path string) stateFile { return stateFile{path: path, slot: -1} }

// load returns the saved state with the highest offset not beyond limit
// (preferring a finished one), and remembers its slot so the next save
// goes to the other.
func (f *stateFile) load(limit int64) (hashState, bool) {
	f.slot = -1
	b, err := os.ReadFile(f.path)
	if err != nil {
		return hashState{}, false
	}
	var best hashState
	for i := range 2 {
		if len(b) < (i+1)*stateSlotSize {
			break
		}
		st, ok := decodeState(b[i*stateSlotSize : (i+1)*stateSlotSize])
		if !ok || st.Offset > limit {
			continue
		}
		if f.slot < 0 || st.Offset > best.Offset || (st.Offset == best.Offset && st.Sum != "" && best.Sum == "") {
			best, f.slot = st, i
		}
	}
	return best, f.slot >= 0
}

// save writes the state into the slot the last loaded or saved state is
// not in.
func (f *stateFile) save(st hashState) error {
	b, err := encodeState(st)
	if err != nil {
		return fmt.Errorf("save digest state: %w", err)
	}
	slot := 0
	if f.slot == 0 {
		slot = 1
	}
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("save digest state: %w", err)
	}
	_, err = fh.WriteAt(b, int64(slot)*stateSlotSize)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save digest state: %w", err)
	}
	f.slot = slot
	return nil
}
