// A portal restarted in the middle of an upload: the client resumes, and
// the SHA-256 computed across the restart is the hash of the bytes.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { Portal, assertStored, randomData, upload, uploadUntilAborted, withTimeout } from './portal.js'

const KiB = 1024

describe('portal restart during an upload', { timeout: 60_000 }, () => {
  const portal = new Portal()
  const stored = []

  before(() => portal.start())
  after(() => portal.close())

  test('abort, restart the portal, resume from the upload URL', { timeout: 30_000 }, async () => {
    const early = randomData(10 * KiB)
    const e = await upload(portal, early, { metadata: { filename: 'early.bin' } })
    stored.push(e.url)

    const chunkSize = 128 * KiB
    const data = randomData(8 * chunkSize + 4321)
    const meta = { filename: 'across-restart.bin', filetype: 'application/octet-stream' }
    const first = await uploadUntilAborted(portal, data, { chunkSize, metadata: meta }, 3 * chunkSize)

    const exit = await portal.restart()
    assert.deepEqual(exit, { code: 0, signal: null }, `SIGTERM is a clean exit; log:\n${portal.log}`)

    const h = await portal.head(first.url)
    assert.equal(h.status, 200, 'the upload survived the restart')
    assert.equal(h.offset, 3 * chunkSize)
    assert.equal(h.length, data.length)

    const r = await upload(portal, data, { chunkSize, metadata: meta, uploadUrl: first.url })
    stored.push(r.url)
    assert.equal(r.url, first.url)
    assert.equal(r.requests.filter((q) => q.method === 'POST').length, 0, 'no new upload was created')
    assert.equal(r.requests.filter((q) => q.method === 'PATCH')[0].reqHeaders['Upload-Offset'], String(3 * chunkSize))
    await assertStored(assert, portal, r.url, data, { filename: 'across-restart.bin', contentType: 'application/octet-stream' })
    // The file stored before the restart is still there, untouched.
    await assertStored(assert, portal, e.url, early, { filename: 'early.bin', contentType: 'application/octet-stream' })
  })

  test('SIGTERM during a PATCH: the PATCH gets 503, keeps its bytes, the client resumes', { timeout: 30_000 }, async () => {
    const data = randomData(1024 * KiB + 7)
    const meta = { filename: 'interrupted.bin', filetype: 'application/octet-stream' }
    const url = await portal.create(data.length, meta)

    // A PATCH that announces every byte but sends only the first 300 KiB,
    // then stalls: the portal is stopped while it waits for the rest.
    const sent = 300 * KiB
    const answer = new Promise((resolveAnswer, reject) => {
      const req = portal.openPatch(url, data.length)
      req.on('response', (res) => {
        let body = ''
        res.on('data', (c) => { body += c })
        res.on('end', () => resolveAnswer({ status: res.statusCode, body }))
        req.destroy()
      })
      req.on('error', (err) => resolveAnswer({ error: err.code || err.message }))
      req.write(data.subarray(0, sent), (err) => { if (err) reject(err) })
    })
    // Wait until the portal has what was sent.
    await portal.waitReceived(url, sent)
    const exit = await portal.stop()
    const res = await withTimeout(answer, 5000, 'PATCH answer')
    assert.deepEqual(exit, { code: 0, signal: null }, `SIGTERM is a clean exit; log:\n${portal.log}`)
    assert.equal(res.status, 503, `the open PATCH is told to come back: ${JSON.stringify(res)}`)

    await portal.start()
    const h = await portal.head(url)
    assert.equal(h.status, 200)
    assert.equal(h.length, data.length)
    assert.equal(h.offset, sent, 'the portal kept every byte it received before it stopped')

    const r = await upload(portal, data, { metadata: meta, uploadUrl: url })
    stored.push(r.url)
    assert.equal(r.requests.filter((q) => q.method === 'PATCH')[0].reqHeaders['Upload-Offset'], String(sent))
    await assertStored(assert, portal, url, data, { filename: 'interrupted.bin', contentType: 'application/octet-stream' })
  })

  test('after the restarts the file list holds exactly the finished uploads', { timeout: 10_000 }, async () => {
    assert.equal(stored.length, 3)
    const files = await portal.files()
    assert.equal(files.length, 3, JSON.stringify(files.map((f) => f.upload_id)))
    const events = await portal.listAll('/api/v1/events?type=file.uploaded')
    assert.equal(events.length, 3, 'one file.uploaded event per file')
  })
})
