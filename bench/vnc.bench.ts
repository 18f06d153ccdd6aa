/**
 * Time from `POST /api/vnc/connect` to a usable desktop (the RFB handshake through the WebSocket bridge has
 * authenticated and received ServerInit), against the bare stack started by hand in the same run: Xvfb +
 * x11vnc spawned directly until x11vnc's port answers with its banner. `bun bench/vnc.bench.ts [rounds]`.
 */

import { rfbHandshake } from '../plugins/vnc/rfb-client.ts'
import { freeLoopbackPort, readBanner, signalGroup, spawnGroup } from '../plugins/vnc/runtime.ts'
import { ADMIN_KEY, startTestServer } from '../test/helpers.ts'

const ROUNDS = Number(process.argv[2] ?? 6)
const DEADLINE = Date.now() + 100_000

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!

function summary(name: string, samples: number[]) {
  const sorted = [...samples].sort((a, b) => a - b)
  return {
    name,
    rounds: samples.length,
    p50_ms: Math.round(percentile(sorted, 50)),
    p99_ms: Math.round(percentile(sorted, 99)),
    min_ms: Math.round(sorted[0]!),
    max_ms: Math.round(sorted.at(-1)!),
  }
}

/** The bare stack: what the supervisor itself waits for, without HTTP, auth, the bridge or RFB auth. */
async function bareStack(): Promise<number> {
  const started = performance.now()
  const xvfb = spawnGroup(['Xvfb', '-displayfd', '1', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], {
    readStdout: true,
  })
  const first = await xvfb.lines![Symbol.asyncIterator]().next()
  const port = freeLoopbackPort()
  const vnc = spawnGroup([
    'x11vnc',
    '-display',
    `:${first.value}`,
    '-rfbport',
    String(port),
    '-localhost',
    '-noipv6',
    '-nopw',
    '-forever',
    '-quiet',
    '-norc',
  ])
  while (!(await readBanner(port, 12, 500))?.startsWith('RFB ')) await Bun.sleep(30)
  const ms = performance.now() - started
  // A viewer's own connection, straight over TCP: x11vnc's accept latency, which the bridge path pays too.
  await readBanner(port, 12, 3000)
  bareViewer.push(performance.now() - started)
  // The client first: x11vnc may hang on TERM if its display vanishes at the same moment.
  for (const proc of [vnc, xvfb]) {
    signalGroup(proc.pid, 'SIGTERM')
    if (!(await Promise.race([proc.exited.then(() => true), Bun.sleep(2000).then(() => false)]))) {
      signalGroup(proc.pid, 'SIGKILL')
      await proc.exited
    }
  }
  return ms
}

const server = await startTestServer({ LOG_LEVEL: 'warn' })
const bridge = `${server.url.replace('http', 'ws')}/vnc/websockify`
const gantry: number[] = []
const connectOnly: number[] = []
const bare: number[] = []
const bareViewer: number[] = []
try {
  for (let i = 0; i < ROUNDS && Date.now() < DEADLINE; i++) {
    const started = performance.now()
    const res = await server.api('/api/vnc/connect', { method: 'POST', json: {} })
    if (res.status !== 200) throw new Error(`connect: ${res.status} ${JSON.stringify(res.body)}`)
    connectOnly.push(performance.now() - started)
    const session = await rfbHandshake(bridge, { authorization: `Bearer ${ADMIN_KEY}` }, res.body.password)
    if (session.securityResult !== 0) throw new Error('VNC authentication failed')
    gantry.push(performance.now() - started)
    session.socket.close()
    await server.api('/api/vnc/disconnect', { method: 'POST' })
    bare.push(await bareStack())
  }
} finally {
  await server.stop()
}

const rows = [
  summary('gantry: connect → authenticated RFB via bridge', gantry),
  summary('gantry: connect answered (running)', connectOnly),
  summary('bare: Xvfb + x11vnc → banner', bare),
  summary('bare: … + a viewer’s banner over direct TCP', bareViewer),
]
console.table(rows)
console.log(`ratio p50 connect gantry/bare: ${(rows[1]!.p50_ms / rows[2]!.p50_ms).toFixed(2)}×`)
console.log(
  `ratio p50 usable gantry (RFB auth via bridge)/bare (banner via TCP): ${(rows[0]!.p50_ms / rows[3]!.p50_ms).toFixed(2)}×`,
)
