// make docker-test: the image as users run it, in a real Docker engine.
// The image (IMAGE, built by make docker-image from build/portal) runs with
// --network host, so all traffic stays on 127.0.0.1, with a --read-only root
// file system and a named /data volume. It checks: healthy within seconds,
// a non-root user, a tus upload and signed webhook deliveries through the
// portal's port, https endpoints verified with the roots in the binary (a
// private CA only through SSL_CERT_FILE), CRON_TZ time zones, `docker stop`
// exiting 0 within the grace period without losing a byte of an upload in
// flight, and a new container on the same volume keeping every file and
// event. CLASSIC_IMAGE, when set, is the same Dockerfile target built by the
// classic builder: its configuration must be the same.

import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmodSync, mkdirSync, readFileSync } from 'node:fs'
import http from 'node:http'
import { join } from 'node:path'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  Portal, atExit, freePort, makeCertificates, must, receiver, request, sh, sha256, verify, waitUntil, workDir,
} from './lib.mjs'

const docker = process.env.DOCKER || 'docker'
const image = process.env.IMAGE || 'doorito-portal:test'
const classicImage = process.env.CLASSIC_IMAGE
const run = randomBytes(4).toString('hex')
const volume = `portal-test-${run}`
const password = `docker-test-${run}-password`
const say = (...a) => console.log('docker-test:', ...a)

const containers = []
atExit(() => {
  for (const c of containers) sh(docker, ['rm', '-f', c])
  sh(docker, ['volume', 'rm', '-f', volume])
})

/** startContainer runs the image detached on the host network and returns its name. */
function startContainer (name, port, { env = {}, args = [], mounts = [] } = {}) {
  const flags = ['run', '-d', '--name', name, '--network', 'host', '--read-only', '-v', `${volume}:/data`,
    '-e', `PORTAL_LISTEN=127.0.0.1:${port}`]
  for (const [k, v] of Object.entries(env)) flags.push('-e', `${k}=${v}`)
  for (const m of mounts) flags.push('-v', m)
  containers.push(name)
  must(docker, [...flags, image, ...args])
  return name
}

const inspect = (name, format) => must(docker, ['inspect', '-f', format, name])

/** waitHealthy polls the container's health and returns the seconds it took. */
async function waitHealthy (name, since) {
  await waitUntil(() => {
    const s = inspect(name, '{{.State.Status}} {{.State.Health.Status}}')
    if (s.startsWith('exited')) throw new Error(`container exited: ${sh(docker, ['logs', name]).stderr}`)
    return s === 'running healthy'
  }, 60_000, `${name} healthy`).catch((err) => {
    throw new Error(`${err.message}\n${sh(docker, ['logs', name]).stdout}${sh(docker, ['logs', name]).stderr}`)
  })
  return (Date.now() - since) / 1000
}

/** stopContainer runs docker stop and returns {seconds, exitCode}. */
function stopContainer (name) {
  const t0 = Date.now()
  must(docker, ['stop', name])
  return { seconds: (Date.now() - t0) / 1000, exitCode: Number(inspect(name, '{{.State.ExitCode}}')) }
}

/**
 * patchInFlight creates an upload of total bytes and sends the first sent
 * bytes in a PATCH that stays open; it resolves once they left, with the
 * upload URL and a promise of the PATCH's outcome.
 */
async function patchInFlight (portal, total, data) {
  const created = await portal.call('/files/', {
    method: 'POST',
    headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': String(total), 'Upload-Metadata': `filename ${Buffer.from('inflight.bin').toString('base64')}` },
  })
  assert.equal(created.status, 201, `create: ${created.status} ${created.text}`)
  const url = new URL(created.headers.location, portal.base).href
  const req = http.request(url, {
    method: 'PATCH',
    headers: {
      Authorization: `Bearer ${portal.token}`, 'Tus-Resumable': '1.0.0', 'Upload-Offset': '0',
      'Content-Type': 'application/offset+octet-stream', 'Content-Length': String(total),
    },
  })
  const outcome = new Promise((resolve) => {
    req.on('response', (res) => { res.resume(); res.on('end', () => resolve(`HTTP ${res.statusCode}`)) })
    req.on('error', (err) => resolve(`connection ${err.code || err.message}`))
  })
  await new Promise((resolve) => req.write(data, resolve))
  req.on('close', () => req.socket && req.socket.unref())
  return { url, outcome, req }
}

test('the Docker image', { timeout: 300_000 }, async (t) => {
  const work = workDir('portal-docker-test-')
  const certs = makeCertificates(work, ['127.0.0.1'])
  chmodSync(work, 0o755)
  chmodSync(certs.caFile, 0o644)
  const plain = await receiver()
  const secure = await receiver({ key: certs.key, cert: certs.cert })
  const port = await freePort()
  const base = `http://127.0.0.1:${port}`
  const portal = new Portal(base)
  let uploaded, inflight, secretPlain, endpointSecure
  const partial = randomBytes(3 << 20)
  const rest = randomBytes(5 << 20)

  await t.test('one runtime definition: the same configuration from BuildKit and the classic builder', () => {
    const cfg = JSON.parse(must(docker, ['image', 'inspect', '-f', '{{json .Config}}', image]))
    const size = Number(must(docker, ['image', 'inspect', '-f', '{{.Size}}', image]))
    say(`image ${image}: ${(size / 1e6).toFixed(1)} MB, user ${cfg.User}, entrypoint ${JSON.stringify(cfg.Entrypoint)} ${JSON.stringify(cfg.Cmd)}, ` +
      `volumes ${Object.keys(cfg.Volumes || {})}, env ${cfg.Env.join(' ')}`)
    assert.equal(cfg.User, '65532:65532')
    assert.deepEqual(Object.keys(cfg.Volumes), ['/data'])
    for (const e of ['PORTAL_LISTEN=0.0.0.0:8080', 'PORTAL_DATA_DIR=/data', 'TMPDIR=/data/tmp']) assert.ok(cfg.Env.includes(e), e)
    assert.deepEqual(cfg.Healthcheck.Test, ['CMD', '/usr/local/bin/portal', 'healthcheck'])
    if (classicImage) {
      const classic = JSON.parse(must(docker, ['image', 'inspect', '-f', '{{json .Config}}', classicImage]))
      for (const k of ['User', 'Env', 'Volumes', 'ExposedPorts', 'Healthcheck', 'Entrypoint', 'Cmd']) {
        assert.deepEqual(classic[k], cfg[k], `classic builder: ${k}`)
      }
      say('the classic builder made the same configuration from the same Dockerfile')
    }
  })

  await t.test('starts healthy within seconds, as a non-root user, on a read-only root file system', async () => {
    const t0 = Date.now()
    startContainer(`portal-test-${run}-1`, port, {
      env: {
        PORTAL_ADMIN_PASSWORD: password, PORTAL_ALLOW_PRIVATE_ENDPOINTS: 'true',
        PORTAL_DELIVERY_RETRY_SCHEDULE: '1h', PORTAL_CLEANUP_SCHEDULE: 'CRON_TZ=Europe/Berlin 0 3 * * *',
      },
    })
    const seconds = await waitHealthy(`portal-test-${run}-1`, t0)
    const pid = inspect(`portal-test-${run}-1`, '{{.State.Pid}}')
    const uid = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)[1]
    const readOnly = inspect(`portal-test-${run}-1`, '{{.HostConfig.ReadonlyRootfs}}')
    say(`healthy ${seconds.toFixed(1)} s after docker run; the portal runs as uid ${uid}; read-only root fs: ${readOnly}; ` +
      'CRON_TZ=Europe/Berlin accepted (time zones built in)')
    assert.ok(seconds < 20, `healthy after ${seconds} s`)
    assert.equal(uid, '65532')
    assert.equal(readOnly, 'true')
    await portal.login(password)
  })

  await t.test('a tus upload and signed webhook deliveries through the port', async () => {
    const ep = await portal.api('/api/v1/endpoints', { method: 'POST', body: { url: plain.url, description: 'plain' } })
    secretPlain = ep.secret
    const data = randomBytes(1 << 20)
    const { url } = await portal.upload(data, { filename: 'one.bin', chunkSize: 256 << 10 })
    uploaded = await portal.fileOf(url)
    assert.equal(uploaded.sha256, sha256(data))
    const hook = await plain.find((e) => e.event_type === 'file.uploaded' && e.file.id === uploaded.id, 15_000, 'file.uploaded')
    const payload = verify(secretPlain, hook)
    assert.equal(payload.file.sha256, sha256(data))
    say(`tus upload of 1 MiB stored (sha256 ${uploaded.sha256.slice(0, 12)}…); file.uploaded delivered and its signature verified`)
  })

  await t.test('https endpoints are verified with the built-in roots: a private CA is refused', async () => {
    endpointSecure = await portal.api('/api/v1/endpoints', { method: 'POST', body: { url: secure.url, description: 'private CA' } })
    const sent = await portal.api(`/api/v1/endpoints/${endpointSecure.id}/test`, { method: 'POST' })
    const d = await waitUntil(async () => {
      const d = await portal.api(`/api/v1/deliveries/${sent.delivery_id}`)
      return d.attempts && d.attempts.length > 0 && d.status !== 'delivering' && d
    }, 15_000, 'an attempt to the https receiver')
    say(`https receiver with a private CA, no SSL_CERT_FILE: ${d.attempts[0].error}`)
    assert.match(d.attempts[0].error, /certificate signed by unknown authority/)
    assert.equal(secure.hooks.length, 0)
  })

  await t.test('the portal writes its temporary files and backups in the volume', () => {
    const out = must(docker, ['exec', `portal-test-${run}-1`, 'portal', 'backup', '/data/backup-test.db'])
    assert.match(out, /database backed up to \/data\/backup-test.db/)
  })

  await t.test('docker stop exits 0 within the grace period and keeps every byte of an upload in flight', async () => {
    inflight = await patchInFlight(portal, partial.length + rest.length, partial)
    await sleep(1000) // the bytes are in the portal's file by now
    const { seconds, exitCode } = stopContainer(`portal-test-${run}-1`)
    const outcome = await inflight.outcome
    say(`docker stop with a PATCH in flight (${partial.length} bytes sent): ${seconds.toFixed(1)} s, exit code ${exitCode}; the PATCH got ${outcome}`)
    assert.equal(exitCode, 0)
    assert.ok(seconds < 10, `docker stop took ${seconds} s (grace period 10 s)`)
    const logs = sh(docker, ['logs', `portal-test-${run}-1`])
    assert.match(logs.stderr, /portal stopped/)
  })

  await t.test('a new container on the same volume keeps every file and event and resumes the upload', async () => {
    must(docker, ['rm', `portal-test-${run}-1`])
    const certDir = join(work, 'certs')
    mkdirSync(certDir)
    must('cp', [certs.caFile, join(certDir, 'ca.pem')])
    chmodSync(certDir, 0o755)
    const t0 = Date.now()
    startContainer(`portal-test-${run}-2`, port, {
      env: { PORTAL_ALLOW_PRIVATE_ENDPOINTS: 'true', PORTAL_DELIVERY_RETRY_SCHEDULE: '1h', SSL_CERT_FILE: '/etc/portal/ca.pem' },
      mounts: [`${certDir}:/etc/portal:ro`],
    })
    const seconds = await waitHealthy(`portal-test-${run}-2`, t0)
    const files = await portal.all('/api/v1/files')
    const events = await portal.all('/api/v1/events')
    const same = files.find((f) => f.id === uploaded.id)
    assert.ok(same, 'the first file is still listed')
    assert.equal(same.sha256, uploaded.sha256)
    const content = await portal.call(`/api/v1/files/${uploaded.id}/content`)
    assert.equal(sha256(content.body), uploaded.sha256, 'its bytes are still there')
    assert.ok(events.some((e) => e.type === 'file.uploaded' && e.file_id === uploaded.id), 'its event is still listed')

    const head = await portal.call(inflight.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
    const offset = Number(head.headers['upload-offset'])
    assert.equal(offset, partial.length, `the server kept ${offset} of the ${partial.length} bytes sent before docker stop`)
    const { url } = await portal.upload(Buffer.concat([partial, rest]), { uploadUrl: inflight.url, filename: 'inflight.bin' })
    const resumed = await portal.fileOf(url)
    assert.equal(resumed.sha256, sha256(Buffer.concat([partial, rest])))
    await plain.find((e) => e.event_type === 'file.uploaded' && e.file.id === resumed.id, 15_000, 'file.uploaded of the resumed upload')
    say(`docker rm + docker run on the same volume: healthy in ${seconds.toFixed(1)} s; ${files.length} file(s) and ${events.length} event(s) ` +
      `kept, the first file's bytes intact; the interrupted upload resumed at ${offset} and finished with the right SHA-256`)
  })

  await t.test('SSL_CERT_FILE adds a private CA for https endpoints', async () => {
    const sent = await portal.api(`/api/v1/endpoints/${endpointSecure.id}/test`, { method: 'POST' })
    const hook = await secure.find((e) => e.event_id === sent.event_id, 15_000, 'the test event over https')
    verify(endpointSecure.secret, hook)
    say('SSL_CERT_FILE=/etc/portal/ca.pem: the test event reached the https receiver, signature verified')
    const { seconds, exitCode } = stopContainer(`portal-test-${run}-2`)
    say(`docker stop: ${seconds.toFixed(1)} s, exit code ${exitCode}`)
    assert.equal(exitCode, 0)
  })

  await t.test('an unwritable data directory is one clear line', () => {
    const dir = join(work, 'root-owned')
    mkdirSync(dir, { mode: 0o755 })
    const r = sh(docker, ['run', '--rm', '--network', 'host', '--read-only', '-v', `${dir}:/data`,
      '-e', `PORTAL_LISTEN=127.0.0.1:${port}`, image])
    say(`a root-owned bind mount at /data: exit ${r.code}: ${r.stderr.trim()}`)
    assert.equal(r.code, 1)
    assert.equal(r.stderr, 'portal: PORTAL_DATA_DIR "/data": cannot write in the directory: permission denied (uid 65532)\n')
  })

  await t.test('a bad setting is one line and exit code 2', () => {
    const r = sh(docker, ['run', '--rm', '--network', 'host', '--read-only', image, 'serve',
      '--cleanup-schedule', 'CRON_TZ=Mars/Olympus 0 3 * * *'])
    assert.equal(r.code, 2)
    assert.equal(r.stderr.split('\n').length, 2, r.stderr)
    assert.match(r.stderr, /^portal: --cleanup-schedule "CRON_TZ=Mars\/Olympus 0 3 \* \* \*": provided bad location/)
  })
})
