// The portal as PID 1, as in its container: killed with SIGKILL in the
// middle of a PATCH and started again — PID 1 once more — it must find the
// upload free and let the client resume. (tusd's file locker wrote the PID
// into <id>.lock; a restarted PID 1 took its own dead lock for a live one
// and every request on the upload failed after 20 s.)

import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import { Portal, assertStored, innerPid, randomData, storage, upload, withTimeout } from './portal.js'

const MiB = 1024 * 1024

// unshare --pid --fork makes the portal PID 1 of a new PID namespace;
// --kill-child passes our SIGKILL on to it. Without root, a user namespace
// grants what --pid needs.
const wrap = process.getuid() === 0
  ? ['unshare', '--pid', '--fork', '--kill-child']
  : ['unshare', '--user', '--map-root-user', '--pid', '--fork', '--kill-child']

// pidInNamespace is the PID the portal sees for itself (the last NSpid of
// the process unshare started).
async function pidInNamespace(unsharePid) {
  const status = await readFile(`/proc/${await innerPid(unsharePid)}/status`, 'utf8')
  return Number(status.match(/^NSpid:\s+(.*)$/m)[1].trim().split(/\s+/).pop())
}

describe('portal as PID 1, killed mid-PATCH', { timeout: 90_000 }, () => {
  const portal = new Portal({ wrap })
  after(() => portal.close())

  test('SIGKILL 3 s into a 32 MiB PATCH, restart as PID 1, tus-js-client resumes to the right sha256', { timeout: 80_000 }, async () => {
    await portal.start()
    assert.equal(await pidInNamespace(portal.child.pid), 1, 'the portal runs as PID 1')

    const data = randomData(32 * MiB)
    const meta = { filename: 'pid1.bin', filetype: 'application/octet-stream' }
    const url = await portal.create(data.length, meta)

    // One PATCH announcing all 32 MiB, fed slowly: 3 s in, the portal dies.
    // On S3 it is fed faster, so that at least one part (16 MiB) reached
    // the bucket before the kill.
    const req = portal.openPatch(url, data.length)
    req.on('error', () => {})
    const started = Date.now()
    const step = storage === 's3' ? 1 * MiB : 256 * 1024
    const upTo = storage === 's3' ? 24 * MiB : data.length / 2
    let off = 0
    while (Date.now() - started < 3000) {
      const n = Math.min(step, upTo - off)
      if (n > 0) {
        req.write(data.subarray(off, off + n))
        off += n
      }
      await sleep(100)
    }
    await portal.waitReceived(url, 1)
    const killed = await portal.kill()
    assert.equal(killed.signal, 'SIGKILL')
    req.destroy()

    await portal.start()
    assert.equal(await pidInNamespace(portal.child.pid), 1, 'the restarted portal is PID 1 again')
    const t0 = Date.now()
    const h = await portal.head(url)
    assert.equal(h.status, 200, 'HEAD after the restart answers at once, not ERR_LOCK_TIMEOUT')
    assert.ok(Date.now() - t0 < 5000, `HEAD took ${Date.now() - t0} ms`)
    assert.ok(h.offset > 0 && h.offset <= off, `offset ${h.offset} of ${off} sent`)
    if (storage === 's3') assert.equal(h.offset % (16 * MiB), 0, 'on S3 what is kept is whole parts')

    const r = await withTimeout(upload(portal, data, { metadata: meta, uploadUrl: url, chunkSize: 8 * MiB }, 60_000), 70_000, 'resume')
    assert.equal(r.url, url)
    assert.equal(r.requests.filter((q) => q.method === 'POST').length, 0, 'resumed, not started again')
    await assertStored(assert, portal, url, data, { filename: meta.filename, contentType: meta.filetype })
  })
})
