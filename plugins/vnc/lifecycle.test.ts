import { describe, expect, test } from 'bun:test'
import { readdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { spawnGantry } from '../../test/gantry-process.ts'
import {
  ADMIN_KEY,
  freshDatabase,
  startTestServer,
  type TestServer,
  tempDir,
  waitFor,
} from '../../test/helpers.ts'
import { closeOf } from './rfb-client.ts'
import { freeLoopbackPort, processAlive } from './runtime.ts'

const admin = { authorization: `Bearer ${ADMIN_KEY}` }

/** A real server process (`bun src/index.ts`) with its own database and the environment given. */
async function spawnServer(env: Record<string, string>) {
  const dataDir = env.DATA_DIR ?? tempDir('gantry-vnc-proc-')
  const database = await freshDatabase()
  const port = freeLoopbackPort()
  const url = `http://127.0.0.1:${port}`
  const { proc } = spawnGantry({
    PORT: String(port),
    DATA_DIR: dataDir,
    ADMIN_API_KEY: ADMIN_KEY,
    OLLAMA_HOST: 'http://127.0.0.1:9',
    ...(database.url ? { DATABASE_URL: database.url } : {}),
    ...env,
  })
  const api = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(url + path, {
      ...init,
      headers: { ...admin, 'content-type': 'application/json' },
    })
    return { status: res.status, body: (await res.json()) as any }
  }
  // Ready once the plugins' start hooks have run (the port opens just before them).
  await waitFor(
    () =>
      fetch(`${url}/api/vnc/status`, { headers: admin }).then(
        (r) => r.status === 200,
        () => false,
      ),
    30_000,
    'the server process to start',
  )
  return {
    url,
    api,
    dataDir,
    proc,
    database,
    async stop() {
      proc.kill('SIGTERM')
      await Promise.race([proc.exited, Bun.sleep(15_000).then(() => proc.kill('SIGKILL'))])
      await database.drop()
    },
  }
}

describe('the desktop and the server’s life', () => {
  test('server shutdown stops the stack', async () => {
    const server = await startTestServer()
    const res = await server.api('/api/vnc/connect', { method: 'POST', json: {} })
    expect(res.status).toBe(200)
    const pids = res.body.processes.map((p: { pid: number }) => p.pid)
    await server.stop()
    for (const pid of pids) expect(processAlive(pid)).toBe(false)
  }, 60_000)

  test('a server killed with SIGKILL leaves its desktop behind; the next start on that DATA_DIR stops it', async () => {
    const dataDir = tempDir('gantry-vnc-crash-')
    let next: TestServer | undefined
    const crashed = await spawnServer({ DATA_DIR: dataDir })
    try {
      const res = await crashed.api('/api/vnc/connect', { method: 'POST', body: '{}' })
      expect(res.status).toBe(200)
      const pids: number[] = res.body.processes.map((p: { pid: number }) => p.pid)
      crashed.proc.kill('SIGKILL')
      await crashed.proc.exited
      // Each desktop process leads its own process group, so it outlives a killed server…
      for (const pid of pids) expect(processAlive(pid)).toBe(true)
      // …and so does its VNC password folder, kept under DATA_DIR beside the ledger (not in /tmp).
      const ledgerDir = join(dataDir, 'vnc-processes')
      const authDirs = () => readdirSync(ledgerDir).filter((n) => n.endsWith('.auth'))
      expect(authDirs()).toHaveLength(1)
      // The X cookie lives there too, so the sweep removes it with the password.
      expect(readdirSync(join(ledgerDir, authDirs()[0]!)).sort()).toEqual(['Xauthority', 'passwd'])
      // …until the next server on the same DATA_DIR starts.
      next = await startTestServer({ DATA_DIR: dataDir })
      await waitFor(() => pids.every((pid) => !processAlive(pid)), 5000, 'the leftovers to be stopped')
      expect(
        next.log.records().some((r) => r.msg === 'stopped desktop processes left by a server that died'),
      ).toBe(true)
      expect(authDirs()).toEqual([])
    } finally {
      crashed.proc.kill('SIGKILL')
      await next?.stop()
      await crashed.database.drop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 90_000)

  test('binaries missing → unavailable with the packages to install; the rest of the server serves', async () => {
    // A real server process started with a PATH that has none of the desktop's binaries.
    const empty = tempDir('gantry-nopath-')
    const normal = await startTestServer()
    const other = await spawnServer({ PATH: empty })
    try {
      const status = await other.api('/api/vnc/status')
      expect(status.status).toBe(200)
      expect(status.body.state).toBe('unavailable')
      expect(status.body.missing).toEqual([
        { binary: 'Xvfb', package: 'xvfb' },
        { binary: 'x11vnc', package: 'x11vnc' },
        { binary: 'xdotool', package: 'xdotool' },
        { binary: 'import', package: 'imagemagick' },
      ])
      const connect = await other.api('/api/vnc/connect', { method: 'POST', body: '{}' })
      expect(connect.status).toBe(503)
      expect(connect.body.error).toBe('desktop_unavailable')
      expect(connect.body.message).toContain('apt install xvfb')
      expect(connect.body.details.missing).toHaveLength(4)
      const disconnect = await other.api('/api/vnc/disconnect', { method: 'POST', body: '{}' })
      expect(disconnect.status).toBe(200)
      expect(disconnect.body.message).toContain('not running')
      expect((await other.api('/health')).status).toBe(200)
      expect((await other.api('/api/me')).status).toBe(200)
      // Every plugin loads exactly as it does on a server that has the binaries.
      const plugins = (await other.api('/')).body.plugins
      const expected = (await normal.api('/', { key: null })).body.plugins
      expect(plugins.find((p: { name: string }) => p.name === 'vnc')?.status).toBe('loaded')
      expect(plugins.map((p: { name: string; status: string }) => [p.name, p.status])).toEqual(
        expected.map((p: { name: string; status: string }) => [p.name, p.status]),
      )
      const closed = await closeOf(`${other.url.replace('http', 'ws')}/vnc/websockify`, admin)
      expect(closed?.code).toBe(1013)
      expect(closed?.reason).toContain('unavailable')
    } finally {
      await other.stop()
      await normal.stop()
      rmSync(empty, { recursive: true, force: true })
      rmSync(other.dataDir, { recursive: true, force: true })
    }
  }, 90_000)
})
