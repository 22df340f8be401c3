package tus

import (
	"hash"
	"io"
	"sync"
)

// pipeBufSize is the size of the blocks handed from the write path to the
// hashing goroutine. Three of them per active write bound the memory.
const (
	pipeBufSize = 256 << 10
	pipeBufs    = 3
)

var pipeBufPool = sync.Pool{New: func() any { b := make([]byte, 0, pipeBufSize); return &b }}

// pipeHasher feeds the bytes of a reader to a hash on a second goroutine, so
// that hashing overlaps with reading the request body and writing the file
// instead of sitting serially in the copy loop.
type pipeHasher struct {
	h     hash.Hash
	full  chan *[]byte
	free  chan *[]byte
	done  chan struct{}
	cur   *[]byte
	alloc int
	n     int64 // bytes hashed, valid after wait
}

func newPipeHasher(h hash.Hash) *pipeHasher {
	p := &pipeHasher{
		h:    h,
		full: make(chan *[]byte, pipeBufs),
		free: make(chan *[]byte, pipeBufs),
		done: make(chan struct{}),
	}
	go p.run()
	return p
}

func (p *pipeHasher) run() {
	defer close(p.done)
	for b := range p.full {
		p.h.Write(*b)
		p.n += int64(len(*b))
		*b = (*b)[:0]
		p.free <- b
	}
}

// buf returns an empty block: a recycled one, a new one while fewer than
// pipeBufs exist, or else the next one the hasher gives back.
func (p *pipeHasher) buf() *[]byte {
	select {
	case b := <-p.free:
		return b
	default:
	}
	if p.alloc < pipeBufs {
		p.alloc++
		return pipeBufPool.Get().(*[]byte)
	}
	return <-p.free
}

func (p *pipeHasher) push(b []byte) {
	for len(b) > 0 {
		if p.cur == nil {
			p.cur = p.buf()
		}
		c := *p.cur
		k := copy(c[len(c):cap(c)], b)
		*p.cur = c[:len(c)+k]
		b = b[k:]
		if len(*p.cur) == cap(*p.cur) {
			p.full <- p.cur
			p.cur = nil
		}
	}
}

// tee returns a reader that passes src through and hashes what it reads.
func (p *pipeHasher) tee(src io.Reader) io.Reader { return teeReader{src: src, p: p} }

// wait hashes what is still buffered, stops the goroutine and returns the
// number of bytes hashed. The reader from tee must not be used afterwards.
func (p *pipeHasher) wait() int64 {
	if p.cur != nil && len(*p.cur) > 0 {
		p.full <- p.cur
		p.cur = nil
	}
	close(p.full)
	<-p.done
	if p.cur != nil {
		pipeBufPool.Put(p.cur)
	}
	for range p.alloc - boolToInt(p.cur != nil) {
		pipeBufPool.Put(<-p.free)
	}
	return p.n
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type teeReader struct {
	src io.Reader
	p   *pipeHasher
}

func (t teeReader) Read(b []byte) (int, error) {
	n, err := t.src.Read(b)
	if n > 0 {
		t.p.push(b[:n])
	}
	return n, err
}
