// tus-js-client against a real portal: every way the client can upload,
// each checked through the files and events API.

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import * as tus from 'tus-js-client'

import { Portal, assertStored, randomData, upload, uploadIdOf, uploadUntilAborted } from './portal.js'

const KiB = 1024

describe('tus uploads with tus-js-client', { timeout: 60_000 }, () => {
  const portal = new Portal()
  const stored = [] // upload URLs that completed
  let scratch

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'portal-node-client-'))
    await portal.start()
  })
  after(async () => {
    await portal.close()
    if (scratch) await rm(scratch, { recursive: true, force: true })
  })

  test('plain upload: one POST, one PATCH', { timeout: 20_000 }, async () => {
    const data = randomData(256 * KiB + 17)
    const meta = { filename: 'plain.bin', filetype: 'application/octet-stream' }
    const r = await upload(portal, data, { metadata: meta })
    stored.push(r.url)
    assert.deepEqual(r.requests.map((q) => `${q.method} ${q.status}`), ['POST 201', 'PATCH 204'])
    await assertStored(assert, portal, r.url, data, { filename: 'plain.bin', contentType: 'application/octet-stream' })
  })

  test('chunked upload: several PATCHes', { timeout: 20_000 }, async () => {
    const chunkSize = 64 * KiB
    const data = randomData(5 * chunkSize + 1000)
    const r = await upload(portal, data, { chunkSize, metadata: { filename: 'chunked.dat', filetype: 'image/png' } })
    stored.push(r.url)
    const patches = r.requests.filter((q) => q.method === 'PATCH')
    assert.equal(patches.length, 6, 'one PATCH per chunk')
    assert.ok(patches.every((q) => q.status === 204))
    assert.equal(r.chunks, 6, 'onChunkComplete ran once per PATCH')
    assert.deepEqual(patches.map((q) => Number(q.offset)),
      [1, 2, 3, 4, 5].map((i) => i * chunkSize).concat(data.length), 'offsets advance chunk by chunk')
    await assertStored(assert, portal, r.url, data, { filename: 'chunked.dat', contentType: 'image/png' })
  })

  test('creation-with-upload: the bytes ride on the POST', { timeout: 20_000 }, async () => {
    const data = randomData(100 * KiB + 3)
    const r = await upload(portal, data, {
      uploadDataDuringCreation: true,
      metadata: { filename: 'with-creation.txt', filetype: 'text/plain; charset=utf-8' },
    })
    stored.push(r.url)
    assert.deepEqual(r.requests.map((q) => `${q.method} ${q.status}`), ['POST 201'], 'no PATCH needed')
    assert.equal(Number(r.requests[0].offset), data.length, 'POST answered with the full offset')
    await assertStored(assert, portal, r.url, data,
      { filename: 'with-creation.txt', contentType: 'text/plain; charset=utf-8' })
  })

  test('deferred length: a stream of unknown size', { timeout: 20_000 }, async () => {
    const data = randomData(200 * KiB + 123)
    // Hand the client odd-sized pieces, as a network stream would.
    const pieces = []
    for (let i = 0; i < data.length; i += 7777) pieces.push(data.subarray(i, i + 7777))
    const r = await upload(portal, Readable.from(pieces), {
      uploadLengthDeferred: true,
      chunkSize: 64 * KiB,
      metadata: { filename: 'stream.log', filetype: 'text/plain' },
    })
    stored.push(r.url)
    const post = r.requests.find((q) => q.method === 'POST')
    assert.equal(post.reqHeaders['Upload-Defer-Length'], '1', 'POST deferred the length')
    assert.equal(post.reqHeaders['Upload-Length'], undefined, 'POST sent no length')
    const patches = r.requests.filter((q) => q.method === 'PATCH')
    assert.ok(patches.length > 1, `several PATCHes (${patches.length})`)
    const withLength = patches.filter((q) => q.reqHeaders['Upload-Length'] !== undefined)
    assert.equal(withLength.length, 1, 'the length was declared once')
    assert.equal(withLength[0], patches.at(-1), 'by the last PATCH')
    assert.equal(Number(withLength[0].reqHeaders['Upload-Length']), data.length)
    await assertStored(assert, portal, r.url, data, { filename: 'stream.log', contentType: 'text/plain' })
  })

  test('parallel uploads: three partial uploads concatenated; only the final one is a file', { timeout: 30_000 }, async () => {
    const filesBefore = (await portal.files()).length
    const eventsBefore = (await portal.listAll('/api/v1/events?type=file.uploaded')).length
    const data = randomData(600 * KiB + 5)
    const r = await upload(portal, data, {
      parallelUploads: 3,
      metadata: { filename: 'parallel.tar', filetype: 'application/x-tar' },
    })
    stored.push(r.url)
    const partials = r.requests.filter((q) => q.method === 'POST' && q.reqHeaders['Upload-Concat'] === 'partial')
    assert.equal(partials.length, 3, 'three partial uploads were created')
    const finals = r.requests.filter((q) => q.method === 'POST' && q.reqHeaders['Upload-Concat']?.startsWith('final;'))
    assert.equal(finals.length, 1, 'one final upload')
    assert.equal(finals[0].status, 201)
    assert.equal(uploadIdOf(r.url), uploadIdOf(new URL(finals[0].location, portal.endpoint).href))

    const f = await assertStored(assert, portal, r.url, data,
      { filename: 'parallel.tar', contentType: 'application/x-tar' })

    const files = await portal.files()
    assert.equal(files.length, filesBefore + 1, 'exactly one new file')
    const partialIds = partials.map((q) => uploadIdOf(new URL(q.location, portal.endpoint).href))
    for (const id of partialIds) {
      assert.ok(!files.some((x) => x.upload_id === id), `partial upload ${id} has no file row`)
    }
    const events = await portal.listAll('/api/v1/events?type=file.uploaded')
    assert.equal(events.length, eventsBefore + 1, 'exactly one new file.uploaded event')
    assert.equal(events.filter((e) => e.file_id === f.id).length, 1)
  })

  test('abort, then resume with findPreviousUploads', { timeout: 30_000 }, async () => {
    const chunkSize = 64 * KiB
    const data = randomData(8 * chunkSize + 99)
    const meta = { filename: 'resumed.bin', filetype: 'application/octet-stream' }
    const urlStorage = new tus.FileUrlStorage(join(scratch, 'urls.json'))
    const first = await uploadUntilAborted(portal, data, { chunkSize, metadata: meta, urlStorage }, 2 * chunkSize)
    assert.equal(first.offset, 2 * chunkSize)

    const h = await portal.head(first.url)
    assert.equal(h.status, 200)
    assert.equal(h.offset, 2 * chunkSize, 'the server kept what it acknowledged')
    assert.equal(h.length, data.length)
    assert.equal(await portal.fileOfUpload(first.url), undefined, 'an unfinished upload is not a file')

    let previous
    const r = await upload(portal, data, {
      chunkSize,
      metadata: meta,
      urlStorage,
      beforeStart: async (up) => {
        previous = await up.findPreviousUploads()
        assert.equal(previous.length, 1, 'the client remembered the upload')
        assert.equal(previous[0].uploadUrl, first.url)
        up.resumeFromPreviousUpload(previous[0])
      },
    })
    stored.push(r.url)
    assert.equal(r.url, first.url, 'same upload resumed')
    assert.equal(r.requests.filter((q) => q.method === 'POST').length, 0, 'no new upload was created')
    assert.equal(r.requests[0].method, 'HEAD')
    const patches = r.requests.filter((q) => q.method === 'PATCH')
    assert.equal(patches[0].reqHeaders['Upload-Offset'], String(2 * chunkSize), 'resumed where it stopped')
    assert.equal(patches.length, 7)
    await assertStored(assert, portal, r.url, data, { filename: 'resumed.bin', contentType: 'application/octet-stream' })
  })

  test('the file list holds exactly the finished uploads', { timeout: 10_000 }, async () => {
    const files = await portal.files()
    assert.equal(stored.length, 6, 'every upload above finished')
    assert.equal(files.length, stored.length, `files: ${JSON.stringify(files.map((f) => f.upload_id))}`)
    assert.deepEqual(new Set(files.map((f) => f.upload_id)), new Set(stored.map(uploadIdOf)))
    assert.ok(files.every((f) => f.status === 'stored'))
    const events = await portal.listAll('/api/v1/events?type=file.uploaded')
    assert.equal(events.length, stored.length, 'one file.uploaded event per file')
    assert.deepEqual(new Set(events.map((e) => e.file_id)), new Set(files.map((f) => f.id)))
  })
})
