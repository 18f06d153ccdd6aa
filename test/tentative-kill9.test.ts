/**
 * Live tokens before the commit, and kill -9: two real `bun src/index.ts` processes on one Postgres database,
 * each reaching it through its own TCP proxy in this process. A client follows a chat answer with
 * `?tentative=1` on the instance generating it. Mid-answer that instance's database link is held (its commits
 * stop reaching Postgres, its tokens keep reaching the client as tentative frames), then the process gets
 * SIGKILL. The other instance takes the answer over from the durable log and continues it with different words.
 * The client must drop what was never acknowledged, resume by its last acknowledged seq on the other instance,
 * and end with exactly the durable log: none of the words shown after the hold, which a takeover contradicted.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { symlinkSync } from 'node:fs'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { join } from 'node:path'
import postgres from 'postgres'
import { ChatFrames } from '../plugins/sessions/chat-client.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { type GantryProcess, spawnGantry } from './gantry-process.ts'
import { ADMIN_KEY, freshDatabase, PG_BASE_URL, ROOT, tempDir, waitFor } from './helpers.ts'

const LEASE_MS = 1500
/** The first attempt's answer: a0…a79 at 20 words/s; a continuation after a takeover says b<n> for the rest. */
const WORDS = 80
const FIRST = Array.from({ length: WORDS }, (_, i) => `a${i}`).join(' ')

/**
 * A TCP proxy to Postgres. `hold()` stops forwarding in both directions (bytes are kept, never sent): the
 * instance behind it is cut off from the database mid-query, as by a stalled network.
 */
async function startProxy(target: { host: string; port: number }) {
  let held = false
  const sockets = new Set<Socket>()
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(target.port, target.host)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => {
        sockets.delete(s)
        client.destroy()
        upstream.destroy()
      })
    }
    client.on('data', (d) => {
      if (!held) upstream.write(d)
    })
    upstream.on('data', (d) => {
      if (!held) client.write(d)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as { port: number }).port,
    hold() {
      held = true
    },
    /** Drops every connection (what was held is never delivered) and stops listening. */
    close() {
      for (const s of sockets) s.destroy()
      server.close()
    },
  }
}
type Proxy = Awaited<ReturnType<typeof startProxy>>
type Instance = GantryProcess & { base: string; proxy: Proxy }

/** A chat socket with `?tentative=1` feeding `kept` (shared across reconnects, as a client's state is). */
function follow(instance: Instance, sessionId: string, kept: ChatFrames) {
  const raw: any[] = []
  const since = kept.last === undefined ? '' : `&since=${kept.last}`
  const ws = new WebSocket(
    `${instance.base.replace('http', 'ws')}/ws/chat/${sessionId}?tentative=1${since}`,
    {
      headers: { authorization: `Bearer ${ADMIN_KEY}` },
    } as any,
  )
  const closed = new Promise<void>((resolve) =>
    ws.addEventListener('close', () => {
      kept.closed()
      resolve()
    }),
  )
  ws.addEventListener('message', (e) => {
    const frame = JSON.parse(String(e.data))
    raw.push(frame)
    kept.apply(frame)
  })
  return { ws, raw, closed, kept }
}

describe.skipIf(!PG_BASE_URL)('live tokens and kill -9 (needs Postgres)', () => {
  let mock: MockOllama
  let database: Awaited<ReturnType<typeof freshDatabase>>
  let sql: ReturnType<typeof postgres>
  const instances: Instance[] = []

  beforeAll(async () => {
    mock = await startMockOllama()
    database = await freshDatabase()
    sql = postgres(database.url!, { max: 2, onnotice: () => {} })
    mock.script(({ body }) => {
      const last = (body?.messages ?? []).at(-1)
      if (last?.role === 'assistant') {
        const said = String(last.content).trim().split(/\s+/).length
        const rest = Array.from({ length: WORDS - said }, (_, i) => `b${said + i}`).join(' ')
        return { content: ` ${rest}`, tokensPerSecond: 100 }
      }
      return { content: FIRST, tokensPerSecond: 20 }
    })
    const plugins = tempDir('gantry-plugins-')
    for (const name of ['sessions', 'websocket'])
      symlinkSync(join(ROOT, 'plugins', name), join(plugins, name))
    const pg = new URL(database.url!)
    for (let i = 0; i < 2; i++) {
      const proxy = await startProxy({ host: pg.hostname, port: Number(pg.port || 5432) })
      const viaProxy = new URL(database.url!)
      viaProxy.hostname = '127.0.0.1'
      viaProxy.port = String(proxy.port)
      const g = spawnGantry({
        DATA_DIR: tempDir(),
        DATABASE_URL: viaProxy.href,
        ADMIN_API_KEY: ADMIN_KEY,
        OLLAMA_HOST: mock.url,
        OLLAMA_MODEL: 'llama3.2',
        PLUGINS_DIR: plugins,
        JOB_LEASE_MS: String(LEASE_MS),
        SHUTDOWN_TIMEOUT_MS: '3000',
      })
      instances.push({ ...g, proxy, base: await g.url(30_000) })
    }
  }, 90_000)

  afterAll(async () => {
    for (const i of instances) {
      i.proc.kill('SIGKILL')
      i.proxy.close()
    }
    await Promise.all(instances.map((i) => i.proc.exited))
    await sql?.end()
    await database?.drop()
    await mock?.stop()
  })

  const api = async (on: Instance, path: string, json?: unknown) => {
    const res = await fetch(on.base + path, {
      method: json === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${ADMIN_KEY}`, 'content-type': 'application/json' },
      body: json === undefined ? undefined : JSON.stringify(json),
    })
    return { status: res.status, body: (await res.json()) as any }
  }

  test('SIGKILL mid-answer: the client drops what was never acknowledged and ends with exactly the durable log', async () => {
    const session = await api(instances[0]!, '/api/sessions', { name: 'kill9' })
    expect(session.status).toBe(201)
    const sid = session.body.session_id as string
    // One follower on each instance, before the answer starts: whichever instance generates has one caught up.
    const followers = instances.map((i) => follow(i, sid, new ChatFrames()))
    await waitFor(
      () => followers.every((f) => f.raw.some((x) => x.type === 'connected')),
      10_000,
      'both followers connected',
    )
    const chat = await api(instances[0]!, `/api/sessions/${sid}/chat`, { message: 'Count slowly' })
    expect(chat.status).toBe(202)
    const messageId = chat.body.assistant_message_id as string

    const holderPid = await waitFor(
      async () => {
        const [job] = await sql`select lease_owner from jobs where id = ${messageId} and status = 'running'`
        return Number(String(job?.lease_owner ?? '').split(':')[1]) || undefined
      },
      15_000,
      'the answer to be claimed',
    )
    const holder = instances.find((i) => i.pid === holderPid)!
    const other = instances.find((i) => i !== holder)!
    const watcher = followers[instances.indexOf(holder)]!
    const bystander = followers[instances.indexOf(other)]!
    await waitFor(() => watcher.kept.counts.ack >= 3, 15_000, 'acknowledged text on the generating instance')

    // Cut the generating instance off from Postgres: its commits stop, its tokens still reach the watcher.
    holder.proxy.hold()
    const shownBefore = watcher.kept.counts.tentative
    await waitFor(
      () => watcher.kept.counts.tentative >= shownBefore + 5,
      10_000,
      'tokens shown after the hold',
    )
    const shownAfterHold = watcher.raw
      .filter((f) => typeof f.tentative === 'number' && f.type === 'content')
      .slice(shownBefore)
      .map((f) => String(f.content).trim())
    holder.proc.kill('SIGKILL')
    await holder.proc.exited
    holder.proxy.close()
    await watcher.closed
    // Nothing shown after the hold was acknowledged: the client held it apart and dropped it with the socket.
    expect(watcher.kept.counts.dropped).toBeGreaterThanOrEqual(5)
    expect(watcher.kept.provisional.size).toBe(0)
    const keptAtKill = watcher.kept.committedText('content', messageId).trim().split(/\s+/)
    for (const word of shownAfterHold) expect(keptAtKill).not.toContain(word)

    // Resume by the last acknowledged seq on the other instance; it takes the answer over after the lease.
    const resumed = follow(other, sid, watcher.kept)
    const response = await waitFor(
      () => resumed.raw.find((f) => f.type === 'response' && f.message_id === messageId),
      30_000,
      'the answer to end on the other instance',
    )
    await waitFor(
      () => bystander.raw.some((f) => f.type === 'response' && f.message_id === messageId),
      10_000,
      'the bystander to see the end',
    )
    const stored = await waitFor(
      async () => {
        const res = await api(other, `/api/sessions/${sid}/messages`)
        const m = res.body.messages?.find((x: any) => x.message_id === messageId)
        return m?.status === 'complete' ? m : undefined
      },
      10_000,
      'the answer to be stored',
    )

    const events = await sql`select seq, type, data from events where stream = ${sid} order by seq`
    expect(events.map((e) => Number(e.seq))).toEqual(events.map((_, i) => i + 1))
    const durable = events
      .filter((e) => e.type === 'content' && (e.data as any).message_id === messageId)
      .map((e) => (e.data as any).content)
      .join('')
    const words = durable.trim().split(/\s+/)
    // One answer, each position once: the first attempt's committed words, then the takeover's.
    expect(words.length).toBe(WORDS)
    expect(words.map((w) => Number(w.slice(1)))).toEqual(words.map((_, i) => i))
    expect(words.some((w) => w.startsWith('b'))).toBe(true)
    // What the watcher saw after the hold was contradicted by the takeover, and it kept none of it.
    for (const word of shownAfterHold) expect(words).not.toContain(word)
    expect(stored.content).toBe(durable)
    expect(response.content).toBe(durable)
    for (const f of [watcher, bystander]) {
      expect(f.kept.problems).toEqual([])
      expect(f.kept.provisional.size).toBe(0)
      expect(f.kept.text('content', messageId)).toBe(durable)
      expect(f.kept.last).toBe(events.length)
    }
    resumed.ws.close()
    bystander.ws.close()
  }, 120_000)
})
