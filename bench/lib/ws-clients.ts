/**
 * WebSocket subscribers in their own process, so the clients' work does not share the server's thread (or
 * core) and distort what is measured. Opens `count` sockets to `url` (headers from GANTRY_BENCH_HEADERS),
 * prints `OPEN` when all are open, then records when each frame with a `"seq":N` arrives, as absolute
 * high-resolution time (performance.timeOrigin + now, comparable across processes on one machine). After
 * `expected` frames per socket, or `timeoutMs`, prints one JSON line {received: [[ms, …] per seq]} and exits.
 *   bun bench/lib/ws-clients.ts <url> <count> <expected> <timeoutMs>
 */
export {}

const [url, countArg, expectedArg, timeoutArg] = process.argv.slice(2)
const count = Number(countArg)
const expected = Number(expectedArg)
const headers = JSON.parse(process.env.GANTRY_BENCH_HEADERS ?? '{}') as Record<string, string>
const clock = () => performance.timeOrigin + performance.now()

const received: number[][] = Array.from({ length: expected }, () => [])
let total = 0
let finish: () => void = () => {}
const done = new Promise<void>((resolve) => {
  finish = resolve
})
const sockets: WebSocket[] = []
for (let i = 0; i < count; i += 100)
  sockets.push(
    ...(await Promise.all(
      Array.from(
        { length: Math.min(100, count - i) },
        () =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(url!, { headers } as any)
            ws.onmessage = (m) => {
              const at = clock()
              const seq = /"seq":(\d+)/.exec(m.data as string)
              if (!seq) return
              received[Number(seq[1]) - 1]?.push(at)
              if (++total === count * expected) finish()
            }
            ws.onopen = () => resolve(ws)
            ws.onerror = () => reject(new Error(`could not open ${url}`))
          }),
      ),
    )),
  )
console.log('OPEN')
const timer = setTimeout(finish, Number(timeoutArg))
await done
clearTimeout(timer)
console.log(JSON.stringify({ received }))
for (const ws of sockets) ws.close()
process.exit(0)
