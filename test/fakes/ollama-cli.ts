// Runs the simulated Ollama on its own, for poking at Gantry by hand without a
// real model: `bun test/fakes/ollama-cli.ts`, then point Gantry's Ollama URL at it.
//   PORT (default 11434), HOST (default 127.0.0.1: loopback only unless asked),
//   MOCK_OLLAMA_TOKENS_PER_SECOND (default 50, a local GPU's pace, so a task or an answer can be watched
//   and steered while it runs as the README shows; 0 = unpaced).
import { startMockOllama } from './ollama.ts'

function envNumber(name: string, fallback: number | undefined): number | undefined {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < 0) {
    console.error(`${name} must be a non-negative number, got ${JSON.stringify(raw)}`)
    process.exit(2)
  }
  return value
}

const mock = await startMockOllama({
  port: envNumber('PORT', 11434),
  hostname: process.env.HOST || '127.0.0.1',
  tokensPerSecond: envNumber('MOCK_OLLAMA_TOKENS_PER_SECOND', 50),
  onRequest: (request) => {
    const model = typeof request.body?.model === 'string' ? ` model=${request.body.model}` : ''
    console.log(`${request.at.toISOString()} ${request.method} ${request.path}${model}`)
    // A long-running simulator must not keep every request body in memory.
    mock.requests.length = 0
  },
})

console.log(`Simulated Ollama listening on ${mock.url}`)

let stopping = false
async function shutdown(signal: string): Promise<void> {
  if (stopping) return
  stopping = true
  console.log(`${signal} received, stopping`)
  await mock.stop()
  process.exit(0)
}

process.on('SIGINT', () => void shutdown('SIGINT'))
process.on('SIGTERM', () => void shutdown('SIGTERM'))
