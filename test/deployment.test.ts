/**
 * The production shape, proven: two Gantry processes on one Postgres behind the shipped nginx.conf with TLS.
 * A task is created through nginx and followed on WebSockets that nginx routes to each instance; the instance
 * running the task is killed with -9. The survivor finishes the task, and every client, reconnecting with
 * `?since=` where its socket died, ends with every event exactly once. Also: the TLS versions nginx accepts,
 * SSE through nginx past its default read timeout, and the security headers on a 200 and on a 404.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { connect as tlsConnect } from 'node:tls'
import { openSse } from '../plugins/logs-stream/testing.ts'
import { codeReply, MODULES, planReply } from '../plugins/tasks/testing.ts'
import { type Deployment, follow, logMarks, servedBy, startDeployment } from './deployment-world.ts'
import { ADMIN_KEY, PG_BASE_URL, ROOT, waitFor } from './helpers.ts'
import { HAVE_NGINX } from './nginx-harness.ts'

describe.skipIf(!PG_BASE_URL || !HAVE_NGINX)('two instances behind nginx (needs Postgres and nginx)', () => {
  let world: Deployment

  beforeAll(async () => {
    world = await startDeployment(2, { JOB_LEASE_MS: '1500', TASK_CONCURRENCY: '2' })
  }, 90_000)
  afterAll(async () => {
    await world?.stop()
  })

  test('kill -9 of the instance running a task: the survivor finishes it; every client has every event once', async () => {
    const goal = 'Build the statistics library behind the proxy'
    const calls = { plan: 0, mathutil: 0, stats: 0 }
    world.ollama.script(({ body }) => {
      const text = JSON.stringify(body?.messages ?? [])
      if (!text.includes(goal)) return { error: { status: 500, message: 'unexpected prompt' } }
      if (String(body.messages[0].content).startsWith('You plan')) {
        calls.plan++
        return { content: planReply(['mathutil', 'stats']) }
      }
      const name = /Write the module (\w+)\.ts/.exec(text)![1] as 'mathutil' | 'stats'
      calls[name]++
      // The first attempt at `stats` hangs: the step in flight when its instance dies.
      if (name === 'stats' && calls.stats === 1) return { content: '{"code":', hang: true }
      return { content: codeReply(MODULES[name].code, MODULES[name].tests) }
    })
    const created = await world.api('/tasks', { method: 'POST', json: { prompt: goal } })
    expect(created.status).toBe(201)
    const id = created.body.task_id as string
    expect(created.body.websocket_url).toBe(`${world.nginx.https.replace('https:', 'wss:')}/ws/${id}`)
    await waitFor(() => calls.stats === 1 && world.ollama.activeGenerations > 0, 30_000, 'the stats step')
    const holder = (await world.holderOf(id))!
    expect(holder).toBeDefined()
    const survivor = world.instances.find((i) => i !== holder)!

    // One follower on each instance: nginx balances round-robin, so open until each instance has one.
    const onSurvivor = await followOn(survivor.name, id)
    const onHolder = await followOn(holder.name, id)
    await onSurvivor.until((f) => f.type === 'MODULE_STARTED' && f.data?.module === 'stats.ts', 10_000)
    await onHolder.until((f) => f.type === 'MODULE_STARTED' && f.data?.module === 'stats.ts', 10_000)

    holder.process.proc.kill('SIGKILL')
    await holder.process.proc.exited
    for (const client of [onSurvivor, onHolder])
      await client.until((f) => f.type === 'TASK_COMPLETE' || f.type === 'TASK_FAILED', 40_000)
    onSurvivor.close()
    onHolder.close()

    const stored = await world.sql`select seq, type from events where stream = ${id} order by seq`
    expect(stored.at(-1)!.type).toBe('TASK_COMPLETE')
    const all = stored.map((e) => e.seq)
    expect(all).toEqual(all.map((_, i) => i + 1))
    for (const client of [onSurvivor, onHolder]) expect(client.events.map((f) => f.seq)).toEqual(all)
    // The survivor's socket never dropped; the holder's died with its process and came back through nginx.
    expect(onSurvivor.drops).toEqual([])
    expect(onHolder.drops).toEqual([1006])
    expect(onHolder.connections).toBe(2)
    expect(calls).toEqual({ plan: 1, mathutil: 1, stats: 2 })
    // The job row is closed just after the last event is committed.
    const job = await waitFor(
      async () =>
        (await world.sql`select status, attempts from jobs where id = ${id} and status <> 'running'`)[0],
      10_000,
      'the job to be closed',
    )
    expect(job).toMatchObject({ status: 'succeeded', attempts: 2 })
    const status = await world.api(`/tasks/${id}`)
    expect(status.body.status).toBe('completed')
    // The survivor's own metrics say what happened: one task taken over, and finished there.
    const metrics = await fetch(`${survivor.url}/metrics`, {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    })
    const text = await metrics.text()
    expect(text).toContain('gantry_job_takeovers_total{kind="task"} 1')
    expect(text).toContain('gantry_job_outcomes_total{kind="task",outcome="succeeded"} 1')

    await world.restart(holder)
  }, 120_000)

  /** A follower whose first socket landed on the named instance (its upgrade's request line says so). */
  async function followOn(name: string, id: string) {
    for (let attempt = 0; attempt < 12; attempt++) {
      const marks = logMarks(world.instances)
      const client = await follow(world.nginx, id)
      const landed = (
        await waitFor(() => servedBy(world.instances, `/ws/${id}`, marks), 5000, 'the upgrade line')
      ).name
      if (landed === name) return client
      client.close()
    }
    throw new Error(`nginx never routed a socket to instance ${name}`)
  }

  test('TLS 1.1 is refused; TLS 1.2 and 1.3 are accepted', async () => {
    const port = Number(new URL(world.nginx.https).port)
    const handshake = (version: 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3') =>
      new Promise<string>((resolve, reject) => {
        const socket = tlsConnect({
          host: '127.0.0.1',
          port,
          ca: world.nginx.ca,
          servername: 'localhost',
          minVersion: version,
          maxVersion: version,
        })
        socket.once('secureConnect', () => {
          resolve(socket.getProtocol() ?? '')
          socket.end()
        })
        socket.once('error', reject)
      })
    expect(await handshake('TLSv1.2')).toBe('TLSv1.2')
    expect(await handshake('TLSv1.3')).toBe('TLSv1.3')
    await expect(handshake('TLSv1.1')).rejects.toThrow()
    if (Bun.which('openssl')) {
      const s = Bun.spawnSync(
        ['openssl', 's_client', '-connect', `127.0.0.1:${port}`, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'],
        { stdin: new Blob(['']), stdout: 'pipe', stderr: 'pipe' },
      )
      expect(s.exitCode).not.toBe(0)
      // The server's own refusal (a protocol_version alert), not a client that would not even try.
      expect(s.stderr.toString()).toMatch(/alert protocol version|unsupported protocol|wrong version/i)
    }
  })

  test('SSE: a quiet stream stays open through nginx past its default 60 s read timeout, kept alive and live', async () => {
    const conf = await Bun.file(`${ROOT}/nginx.conf`).text()
    const { KEEP_ALIVE_MS } = await import('../plugins/logs-stream/sse.ts')
    const session = await world.api('/api/sessions', { method: 'POST', json: { name: 'quiet' } })
    expect(session.status).toBe(201)
    const id = session.body.session_id as string
    for (const path of [`/api/streams/${id}/events`, '/tasks/task-x/logs/stream', '/api/logs/stream']) {
      const timeout = readTimeoutFor(conf, path)
      // nginx's default is 60 s; Gantry's keep-alives must come well within whatever the location sets.
      expect(timeout).toBeGreaterThan(60)
      expect(timeout * 1000).toBeGreaterThanOrEqual(4 * KEEP_ALIVE_MS)
    }
    // A quiet stream (a session nobody talks to): a keep-alive comment reaches the client through nginx.
    const stream = await openSse(
      `${world.nginx.https}/api/streams/${id}/events`,
      { authorization: `Bearer ${ADMIN_KEY}` },
      { ca: world.nginx.ca },
    )
    expect(stream.status).toBe(200)
    await waitFor(() => stream.comments.includes('keep-alive'), KEEP_ALIVE_MS + 5000, 'a keep-alive')
    // And it really stays open past nginx's default 60 s read timeout: still open at 65 s, and live — an event
    // appended then still reaches this very stream.
    const outcome = await Promise.race([
      stream.done.then(() => 'closed'),
      Bun.sleep(65_000).then(() => 'open'),
    ])
    expect(outcome).toBe('open')
    expect(stream.comments.filter((c) => c === 'keep-alive').length).toBeGreaterThanOrEqual(4)
    const chat = await world.api(`/api/sessions/${id}/chat`, {
      method: 'POST',
      json: { message: 'still there?' },
    })
    expect(chat.status).toBeLessThan(300)
    const seen = await stream.next((m) => m.data.includes('still there?'), 10_000)
    expect(seen.data).toContain('still there?')
    stream.close()
  }, 120_000)

  test('security headers on a 200 and on a 404', async () => {
    for (const [path, status] of [
      ['/health', 200],
      [`/no-such-route-${crypto.randomUUID()}`, 404],
      ['/tasks/task-does-not-exist', 404],
    ] as const) {
      const res = await world.api(path)
      expect(res.status).toBe(status)
      expect(res.headers.get('strict-transport-security')).toBe('max-age=31536000')
      expect(res.headers.get('x-content-type-options')).toBe('nosniff')
      expect(res.headers.get('referrer-policy')).toBe('same-origin')
      expect(res.headers.get('server')).toBe('nginx') // server_tokens off: no version
    }
  })
})

/**
 * proxy_read_timeout (seconds) of the location nginx picks for `path`: the first regex location that matches
 * (this config has no exact or ^~ prefix locations on these paths), else the server's, else nginx's 60 s.
 */
function readTimeoutFor(conf: string, path: string): number {
  const seconds = (block: string) => {
    const m = /proxy_read_timeout\s+(\d+)(s|m)?;/.exec(block)
    return m ? Number(m[1]) * (m[2] === 'm' ? 60 : 1) : undefined
  }
  for (const m of conf.matchAll(/location ~ (\S+) \{([^}]*)\}/g))
    if (new RegExp(m[1]!).test(path)) return seconds(m[2]!) ?? 60
  return 60
}
