/**
 * A pacing tap between Gantry and the simulated Ollama: the simulator answers at once and the tap hands each
 * streamed line on at its due time (line k at start + k/rate s). Due times are absolute, so a timer that fires
 * late on a busy machine is caught up by the next line instead of slowing the whole answer down: the answer
 * keeps its pace on average, as a GPU's would. `onLine` hears of each line the moment it is handed on.
 */
export function startPacedTap(
  upstream: string,
  tokensPerSecond: number,
  onLine?: (line: string, at: number) => void,
) {
  const interval = 1000 / tokensPerSecond
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url)
      const answer = await fetch(upstream + url.pathname + url.search, {
        method: req.method,
        headers: { 'content-type': 'application/json' },
        body: req.method === 'GET' || req.method === 'HEAD' ? undefined : await req.text(),
        signal: req.signal,
      })
      if (!answer.headers.get('content-type')?.includes('ndjson') || !answer.body) return answer
      const reader = answer.body.getReader()
      const decoder = new TextDecoder()
      const encoder = new TextEncoder()
      const started = performance.now()
      let sent = 0
      let pending = ''
      const paced = new ReadableStream<Uint8Array>({
        async pull(controller) {
          const { value, done } = await reader.read()
          if (done) return controller.close()
          pending += decoder.decode(value, { stream: true })
          for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
            const line = pending.slice(0, nl + 1)
            pending = pending.slice(nl + 1)
            const wait = started + ++sent * interval - performance.now()
            if (wait > 1) await Bun.sleep(wait)
            controller.enqueue(encoder.encode(line))
            onLine?.(line, performance.timeOrigin + performance.now())
          }
        },
        cancel: () => reader.cancel(),
      })
      return new Response(paced, { status: answer.status, headers: answer.headers })
    },
  })
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) }
}
