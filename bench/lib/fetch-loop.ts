export {}

// Fallback load generator (no wrk): N concurrent keep-alive fetch loops for S seconds; prints a LoadResult.
// Targets are the benches' own loopback servers: nginx there has a self-signed certificate made for the run.
const [url, headersJson, connections, seconds] = process.argv.slice(2)
const headers = JSON.parse(headersJson!) as Record<string, string>
const until = performance.now() + Number(seconds) * 1000
const latencies: number[] = []
let errors = 0
let firstError: string | undefined
const init = { headers, tls: { rejectUnauthorized: false } }
async function loop() {
  while (performance.now() < until) {
    const t0 = performance.now()
    try {
      const res = await fetch(url!, init)
      await res.arrayBuffer()
      if (!res.ok) {
        errors++
        firstError ??= `HTTP ${res.status}`
      }
    } catch (err) {
      errors++
      firstError ??= (err as Error).message
    }
    latencies.push(performance.now() - t0)
  }
}
const started = performance.now()
await Promise.all(Array.from({ length: Number(connections) }, loop))
const elapsed = (performance.now() - started) / 1000
if (firstError) console.error(`fetch loop: ${errors} errors, the first: ${firstError}`)
latencies.sort((a, b) => a - b)
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]
console.log(
  JSON.stringify({
    tool: 'fetch',
    requests: latencies.length,
    seconds: elapsed,
    rps: latencies.length / elapsed,
    p50Ms: pct(50),
    p99Ms: pct(99),
    errors,
  }),
)
