package tus

import (
	"hash"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The write pipeline moves a request body to the upload's file in blocks.
// The request goroutine reads a block; a writer goroutine writes it at its
// offset while a hasher goroutine feeds it to the digest; the block is
// reused once both are done. Reading, writing and hashing overlap, so with
// a spare core hashing adds no time to a write, and no byte is copied
// between the stages. (The former design copied every read into a hasher
// buffer from inside tusd's 32 KiB copy loop.)
//
// As the file grows, the writer starts a background flush every syncEvery
// bytes of file, so when the upload completes nearly all of it is already
// on stable storage and the fsync before the final answer is short.
const (
	// pipeBlocks blocks circulate per write: one being read, one being
	// written and hashed, and slack for either stage to fall behind.
	pipeBlocks = 4
	// Blocks are 64 to 128 KiB. Larger blocks save little (the stages run
	// in parallel anyway) and lengthen the tail: after the last byte the
	// hasher may still have pipeBlocks blocks to go, and the final answer
	// waits for it. When many uploads run at once they share blockBudget
	// and get smaller blocks, so memory stays bounded.
	minBlockShift = 16
	maxBlockShift = 17
	blockBudget   = 32 << 20
	// syncEvery is how often, in bytes of file, a background flush starts.
	syncEvery = 8 << 20
	// maxBackgroundSyncs bounds the flushes in flight per store.
	maxBackgroundSyncs = 4
)

// block is one buffer of the pipeline: buf[:n] holds the bytes read.
type block struct {
	buf   []byte
	n     int
	shift int
	refs  atomic.Int32 // stages still using the block
}

// blockShift picks the block size (1<<shift) for a write while active
// writes run.
func blockShift(active int64) int {
	per := blockBudget / (max(active, 1) * pipeBlocks)
	s := maxBlockShift
	for s > minBlockShift && int64(1)<<s > per {
		s--
	}
	return s
}

// blockPools keeps a store's free blocks, one pool per size.
type blockPools [maxBlockShift - minBlockShift + 1]sync.Pool

func (p *blockPools) get(shift int) *block {
	if b, ok := p[shift-minBlockShift].Get().(*block); ok {
		return b
	}
	return &block{buf: make([]byte, 1<<shift), shift: shift}
}

func (p *blockPools) put(b *block) {
	b.n = 0
	p[b.shift-minBlockShift].Put(b)
}

// writeResult is what a pipelined write did.
type writeResult struct {
	written  int64     // bytes that reached the file
	hashed   int64     // bytes fed to the digest: all that was read
	lastByte time.Time // when the last byte was read from src
}

// writeHashed copies src to the file at path from offset and feeds h the
// same bytes. It stops at the first write error, after which the digest
// may have seen more than the file got (hashed > written); a read error
// ends the copy once what was read is written and hashed.
// It is one long function on purpose: the reader loop and its two
// consumers share the block pool, the channels and res, and the order of
// close, wait and return is the argument for its correctness; split, that
// order would be spread over several functions.
func (s *HashStore) writeHashed(path string, offset int64, src io.Reader, h hash.Hash) (writeResult, error) {
	var res writeResult
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return res, err
	}
	active := s.writers.Add(1)
	defer s.writers.Add(-1)
	shift := blockShift(active)

	toWrite := make(chan *block, pipeBlocks)
	toHash := make(chan *block, pipeBlocks)
	free := make(chan *block, pipeBlocks)
	release := func(b *block) {
		if b.refs.Add(-1) == 0 {
			free <- b
		}
	}
	var wg sync.WaitGroup
	var werr error // set by the writer, read after wg.Wait
	var failed atomic.Bool
	wg.Add(2)
	go func() {
		defer wg.Done()
		off := offset
		for b := range toWrite {
			if werr == nil {
				k, err := f.WriteAt(b.buf[:b.n], off)
				res.written += int64(k)
				if err != nil {
					werr = err
					failed.Store(true)
				}
				if (off+int64(k))/syncEvery != off/syncEvery {
					s.backgroundSync(path)
				}
				off += int64(k)
			}
			release(b)
		}
	}()
	go func() {
		defer wg.Done()
		for b := range toHash {
			h.Write(b.buf[:b.n])
			res.hashed += int64(b.n)
			release(b)
		}
	}()

	allocated := 0
	var rerr error
	for !failed.Load() {
		var b *block
		select {
		case b = <-free:
		default:
			if allocated < pipeBlocks {
				b = s.blocks.get(shift)
				allocated++
			} else {
				b = <-free
			}
		}
		// One Read per block, not ReadFull: bytes that arrived are written
		// now, never held back waiting for a slow client to fill a block.
		n, err := src.Read(b.buf)
		b.n = n
		if n > 0 {
			b.refs.Store(2)
			toWrite <- b
			toHash <- b
		} else {
			free <- b
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	res.lastByte = time.Now()
	close(toWrite)
	close(toHash)
	wg.Wait()
	for range allocated {
		s.blocks.put(<-free)
	}
	cerr := f.Close()
	if werr != nil {
		return res, werr
	}
	if rerr != nil {
		return res, rerr
	}
	return res, cerr
}

// backgroundSync starts flushing the file at path to stable storage,
// unless one is running for it already or maxBackgroundSyncs are running
// in all (a later one catches up). The fsync at finish still makes the
// upload durable; these only move most of its work to while the bytes are
// arriving. Finish waits for the file's running flush first (waitSync),
// so no stray flush competes with the database commit that follows.
func (s *HashStore) backgroundSync(path string) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.syncing[path] != nil {
		return
	}
	select {
	case s.syncSlots <- struct{}{}:
	default:
		return
	}
	done := make(chan struct{})
	if s.syncing == nil {
		s.syncing = map[string]chan struct{}{}
	}
	s.syncing[path] = done
	go func() {
		defer func() {
			s.syncMu.Lock()
			delete(s.syncing, path)
			s.syncMu.Unlock()
			close(done)
			<-s.syncSlots
		}()
		f, err := os.Open(path)
		if err != nil {
			return
		}
		f.Sync()
		f.Close()
	}()
}

// waitSync waits for the background flush of the file at path, if one is
// running.
func (s *HashStore) waitSync(path string) {
	s.syncMu.Lock()
	done := s.syncing[path]
	s.syncMu.Unlock()
	if done != nil {
		<-done
	}
}
