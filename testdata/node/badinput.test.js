// Uploads the portal must refuse, and the size limit.

import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import { Portal, assertStored, randomData, upload } from './portal.js'

const b64 = (s) => Buffer.from(s).toString('base64')

function create(portal, headers) {
  return portal.request('/files/', { method: 'POST', headers: { 'Tus-Resumable': '1.0.0', ...headers } })
}

describe('refused uploads', { timeout: 60_000 }, () => {
  const portal = new Portal({ args: ['--max-upload-size', '1000'] })

  before(() => portal.start())
  after(() => portal.close())

  test('a filetype that is not a media type is refused with 400', { timeout: 10_000 }, async () => {
    const r = await create(portal, {
      'Upload-Length': '10',
      'Upload-Metadata': `filename ${b64('x.bin')},filetype ${b64('not a type')}`,
    })
    assert.equal(r.status, 400, `${r.status} ${r.text}`)
    assert.equal(r.headers.get('location'), null, 'no upload was created')
    assert.match(r.text, /filetype/)
  })

  test('the client sees the refusal too', { timeout: 10_000 }, async () => {
    await assert.rejects(
      upload(portal, randomData(10), { metadata: { filename: 'x.bin', filetype: 'not a type' } }),
      (err) => err.originalResponse?.getStatus() === 400,
    )
  })

  test('an Upload-Length over --max-upload-size is refused with 413', { timeout: 10_000 }, async () => {
    const r = await create(portal, { 'Upload-Length': '2000', 'Upload-Metadata': `filename ${b64('big.bin')}` })
    assert.equal(r.status, 413, `${r.status} ${r.text}`)
    assert.equal(r.headers.get('location'), null, 'no upload was created')
    await assert.rejects(upload(portal, randomData(2000), { metadata: { filename: 'big.bin' } }),
      (err) => err.originalResponse?.getStatus() === 413)
  })

  test('an upload of exactly --max-upload-size is stored', { timeout: 10_000 }, async () => {
    const data = randomData(1000)
    const r = await upload(portal, data, { metadata: { filename: 'max.bin', filetype: 'application/octet-stream' } })
    await assertStored(assert, portal, r.url, data, { filename: 'max.bin', contentType: 'application/octet-stream' })
  })

  test('refused uploads left no files and no events', { timeout: 10_000 }, async () => {
    const files = await portal.files()
    assert.deepEqual(files.map((f) => f.filename), ['max.bin'])
    const events = await portal.listAll('/api/v1/events')
    assert.deepEqual(events.map((e) => e.type), ['file.uploaded'])
  })
})
