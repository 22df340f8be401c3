package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"math/rand/v2"
)

// blockSize is the unit in which upload bodies are generated: each block
// of each upload comes from its own ChaCha8 stream, so a client resuming
// at any offset regenerates exactly the bytes it would have sent, and no
// two uploads (or two blocks) share content.
const blockSize = 64 << 10

// content is the body of one upload: size pseudo-random bytes determined
// by the run's seed and the upload's number.
type content struct {
	seed uint64
	n    int // upload number within the run
	size int64
}

// block fills b (blockSize bytes) with block i of the content.
func (c content) block(i int64, b []byte) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], c.seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(c.n))
	binary.LittleEndian.PutUint64(key[16:], uint64(i))
	copy(key[24:], "portalcr")
	rand.NewChaCha8(key).Read(b)
}

// reader returns the n bytes of the content from offset off.
func (c content) reader(off, n int64) *contentReader {
	return &contentReader{c: c, off: off, end: min(off+n, c.size), cur: -1}
}

// sum is the lower-case hex SHA-256 of the whole content.
func (c content) sum() string {
	h := sha256.New()
	io.Copy(h, c.reader(0, c.size))
	return hex.EncodeToString(h.Sum(nil))
}

// contentReader yields a range of a content, generating one block at a
// time.
type contentReader struct {
	c        content
	off, end int64
	cur      int64 // number of the block in buf (-1: none)
	buf      []byte
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	if r.buf == nil {
		r.buf = make([]byte, blockSize)
	}
	total := 0
	for len(p) > 0 && r.off < r.end {
		if b := r.off / blockSize; b != r.cur {
			r.c.block(b, r.buf)
			r.cur = b
		}
		in := r.off % blockSize
		k := copy(p, r.buf[in:min(int64(blockSize), in+r.end-r.off)])
		p = p[k:]
		r.off += int64(k)
		total += k
	}
	return total, nil
}
