/**
 * A production deployment on one machine: several real `bun src/index.ts` processes on one fresh Postgres
 * database, behind the shipped nginx.conf with TLS, and the simulated Ollama. Each instance keeps its port across
 * restarts, so nginx's upstream list stays true while instances come and go. Shared by the deployment tests.
 */
import { rmSync } from 'node:fs'
import postgres from 'postgres'
import { connectWs } from '../plugins/websocket/testing.ts'
import { type MockOllama, startMockOllama } from './fakes/ollama.ts'
import { type GantryProcess, spawnGantry } from './gantry-process.ts'
import { ADMIN_KEY, freeLoopbackPort, freshDatabase, tempDir, waitFor } from './helpers.ts'
import { type RunningNginx, startNginx } from './nginx-harness.ts'

export interface Instance {
  name: string
  port: number
  url: string
  process: GantryProcess
  /** JSON log records written so far by the current process. */
  records(): Record<string, any>[]
}

export interface Deployment {
  nginx: RunningNginx
  ollama: MockOllama
  sql: ReturnType<typeof postgres>
  instances: Instance[]
  /** The instance whose process holds the lease of job `id` (from jobs.lease_owner, `host:pid:…`). */
  holderOf(id: string): Promise<Instance | undefined>
  /** JSON through nginx with the admin key; status, parsed body, headers. */
  api(
    path: string,
    init?: RequestInit & { json?: unknown },
  ): Promise<{ status: number; body: any; headers: Headers }>
  /** Starts the instance again on its own port (after it stopped or was killed) and waits for its banner. */
  restart(instance: Instance): Promise<void>
  stop(): Promise<void>
}

const parseLines = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, any>
      } catch {
        return {}
      }
    })

/** Brings up `count` instances (LOG_LEVEL=info, so request lines are visible) and nginx in front of them. */
export async function startDeployment(count: number, env: Record<string, string> = {}): Promise<Deployment> {
  const ollama = await startMockOllama()
  const database = await freshDatabase()
  if (!database.url) throw new Error('a deployment needs Postgres (TEST_DATABASE_URL or DATABASE_URL)')
  const sql = postgres(database.url, { max: 2, onnotice: () => {} })
  const dir = tempDir('gantry-deploy-')
  const instances: Instance[] = []

  const launch = async (instance: Omit<Instance, 'url' | 'process' | 'records'> & Partial<Instance>) => {
    const dataDir = tempDir('gantry-instance-')
    const process = spawnGantry({
      DATA_DIR: dataDir,
      DATABASE_URL: database.url!,
      ADMIN_API_KEY: ADMIN_KEY,
      OLLAMA_HOST: ollama.url,
      OLLAMA_MODEL: 'llama3.2',
      PORT: String(instance.port),
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: '10000',
      ...env,
    })
    process.proc.exited.then(() => rmSync(dataDir, { recursive: true, force: true }))
    const url = await process.url(30_000)
    return Object.assign(instance, { process, url, records: () => parseLines(process.stdout()) }) as Instance
  }

  const stopAll = async () => {
    for (const i of instances) if (i.process?.proc.exitCode === null) i.process.proc.kill('SIGKILL')
    await Promise.all(instances.map((i) => i.process?.proc.exited))
  }

  try {
    for (let n = 0; n < count; n++)
      instances.push(await launch({ name: String.fromCharCode(65 + n), port: freeLoopbackPort() }))
    const nginx = await startNginx(
      dir,
      instances.map((i) => i.port),
    )
    return {
      nginx,
      ollama,
      sql,
      instances,
      async holderOf(id) {
        const [job] = await sql`select lease_owner from jobs where id = ${id} and status = 'running'`
        const pid = Number(String(job?.lease_owner ?? '').split(':')[1])
        return instances.find((i) => i.process.pid === pid)
      },
      async api(path, init = {}) {
        const { json, ...rest } = init
        const res = await nginx.get(path, {
          ...rest,
          headers: {
            authorization: `Bearer ${ADMIN_KEY}`,
            ...(json === undefined ? {} : { 'content-type': 'application/json' }),
            ...(rest.headers as Record<string, string>),
          },
          body: json === undefined ? rest.body : JSON.stringify(json),
        })
        const text = await res.text()
        let body: any = text
        try {
          body = JSON.parse(text)
        } catch {
          // not JSON: keep the text
        }
        return { status: res.status, body, headers: res.headers }
      },
      async restart(instance) {
        await instance.process.proc.exited
        await launch(instance)
      },
      async stop() {
        await nginx.stop()
        await stopAll()
        await sql.end()
        await database.drop()
        await ollama.stop()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    await stopAll()
    await sql.end()
    await database.drop()
    await ollama.stop()
    throw err
  }
}

/** Which instance's log shows a request line for `path` after `before` lines (per instance) were seen. */
export function servedBy(instances: Instance[], path: string, before: Map<Instance, number>) {
  return instances.find((i) =>
    i
      .records()
      .slice(before.get(i) ?? 0)
      .some((r) => r.msg === 'request' && r.path === path),
  )
}

export const logMarks = (instances: Instance[]) => new Map(instances.map((i) => [i, i.records().length]))

export { waitFor }

/**
 * A client following one stream over WebSocket through nginx, as a real one would: whenever its socket closes
 * before the stream ends, it reconnects with `?since=<last seq>`. `events` holds every seq'd frame received.
 */
export interface Follower {
  events: any[]
  /** Close codes of the sockets that ended early (1001 on a graceful stop, 1006 on a crash). */
  drops: number[]
  /** How many sockets were opened in all. */
  connections: number
  /** Resolves with the first event matching, waiting for it. */
  until(match: (frame: any) => boolean, timeoutMs: number): Promise<any>
  close(): void
}

export async function follow(
  nginx: RunningNginx,
  stream: string,
  opts: { since?: number; onOpen?: (n: number) => void } = {},
): Promise<Follower> {
  // Each socket's frames, in connection order: the stream as the client saw it is their concatenation.
  const segments: any[][] = []
  const drops: number[] = []
  let closed = false
  let socket: WebSocket | undefined
  const events = () => segments.flat().filter((f) => typeof f.seq === 'number')
  const wss = nginx.https.replace('https:', 'wss:')
  const headers = { authorization: `Bearer ${ADMIN_KEY}`, origin: nginx.https }
  const open = async (): Promise<void> => {
    for (let attempt = 0; ; attempt++) {
      const since = events().at(-1)?.seq ?? opts.since ?? 0
      try {
        const client = await connectWs(`${wss}/ws/${stream}?since=${since}`, headers, { ca: nginx.ca })
        segments.push(client.frames)
        socket = client.ws
        opts.onOpen?.(segments.length)
        client.closed.then(({ code }) => {
          if (closed) return
          drops.push(code)
          // A client that cannot get back in shows as missing events, not as a stray error.
          setTimeout(() => void open().catch(() => {}), 50)
        })
        return
      } catch (err) {
        if (closed || attempt >= 100) throw err
        await Bun.sleep(100)
      }
    }
  }
  await open()
  return {
    get events() {
      return events()
    },
    drops,
    get connections() {
      return segments.length
    },
    until(match, timeoutMs) {
      return waitFor(() => events().find(match), timeoutMs, `a frame on ${stream}`)
    },
    close() {
      closed = true
      socket?.close()
    },
  }
}

/**
 * The same client over SSE (`GET /api/streams/:id/events` through nginx): whenever the stream ends before
 * `isLast` saw its event, it reconnects with `Last-Event-ID`. `events` holds every envelope received.
 */
export async function followSse(nginx: RunningNginx, stream: string, isLast: (envelope: any) => boolean) {
  const { openSse } = await import('../plugins/logs-stream/testing.ts')
  const segments: { data: string; id?: string; event?: string }[][] = []
  let reconnects = 0
  let stop = () => {}
  const stopped = new Promise<void>((resolve) => {
    stop = resolve
  })
  let closed = false
  // Envelopes only: the closing `event: end` of a finished stream carries no JSON.
  const events = () =>
    segments
      .flat()
      .filter((m) => !m.event)
      .map((m) => JSON.parse(m.data))
  const running = (async () => {
    for (let attempt = 0; !closed && attempt < 200; attempt++) {
      const last = segments.flat().at(-1)?.id
      const client = await openSse(
        `${nginx.https}/api/streams/${stream}/events`,
        { authorization: `Bearer ${ADMIN_KEY}`, ...(last ? { 'last-event-id': last } : {}) },
        { ca: nginx.ca },
      ).catch(() => undefined)
      if (client?.status !== 200) {
        client?.close()
        await Bun.sleep(100)
        continue
      }
      segments.push(client.messages)
      await Promise.race([client.done, stopped])
      client.close()
      if (closed || events().some(isLast)) return
      reconnects++
      await Bun.sleep(50)
    }
  })()
  return {
    get events() {
      return events()
    },
    get reconnects() {
      return reconnects
    },
    until: (timeoutMs: number) =>
      waitFor(() => events().some(isLast), timeoutMs, `the last event on ${stream} (SSE)`),
    async close() {
      closed = true
      stop()
      await running
    },
  }
}
