// kill -9 at the two moments that matter for a multi-part upload: in the
// middle of a PATCH, and right after its last byte was sent (before the
// answer: the last part, the object's completion and the finalize are
// under way). Restarted, the portal lets tus-js-client finish; the stored
// sha256 is the hash of the bytes sent, there is one file.uploaded, and
// the bytes served are exactly the bytes sent. Runs on either storage
// (PORTAL_STORAGE=s3: several parts in a real S3 server).

import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'

import { Portal, assertStored, randomData, sha256, upload, withTimeout } from './portal.js'

const MiB = 1024 * 1024

// feed writes data[from:to] into the open PATCH in 1 MiB pieces.
async function feed(req, data, from, to) {
  for (let off = from; off < to; off += MiB) {
    if (!req.write(data.subarray(off, Math.min(off + MiB, to)))) {
      await new Promise((resolve) => req.once('drain', resolve))
    }
  }
}

describe('kill -9 during a multi-part upload', { timeout: 180_000 }, () => {
  const portal = new Portal()
  after(() => portal.close())

  for (const moment of ['mid-PATCH', 'after the last byte']) {
    test(`killed ${moment}, restarted, resumed`, { timeout: 80_000 }, async () => {
      if (!portal.child) await portal.start()
      const data = randomData(40 * MiB + 123)
      const meta = { filename: `kill-${moment}.bin`, filetype: 'application/octet-stream' }
      const url = await portal.create(data.length, meta)
      const req = portal.openPatch(url, data.length)
      const answered = new Promise((resolve) => {
        req.on('response', (res) => resolve(res.statusCode))
        req.on('error', () => resolve(null))
      })
      if (moment === 'mid-PATCH') {
        await feed(req, data, 0, 36 * MiB) // over two parts of 16 MiB
        await portal.waitReceived(url, 36 * MiB)
      } else {
        await feed(req, data, 0, data.length)
        await new Promise((resolve) => req.end(resolve))
        await sleep(50)
      }
      await portal.kill()
      req.destroy()
      const status = await withTimeout(answered, 5000, 'PATCH end')

      await portal.start()
      const h = await portal.head(url)
      if (status === 204) assert.equal(h.offset, data.length, 'an acknowledged upload is complete after the crash')
      const r = await withTimeout(upload(portal, data, { metadata: meta, uploadUrl: url, chunkSize: 16 * MiB }, 60_000), 70_000, 'resume')
      assert.equal(r.url, url)
      await assertStored(assert, portal, url, data, { filename: meta.filename, contentType: meta.filetype })
      const files = await portal.files()
      const f = files.find((x) => x.upload_id === url.slice(url.lastIndexOf('/') + 1))
      const events = await portal.listAll(`/api/v1/events?type=file.uploaded&file_id=${f.id}`)
      assert.equal(events.length, 1, 'one file.uploaded')
      const got = await portal.request(`/api/v1/files/${f.id}/content`)
      assert.equal(got.status, 200)
      assert.equal(sha256(got.buf), sha256(data), 'the bytes served are the bytes sent')
    })
  }
})
