import type { Gantry } from './context.ts'

const FIRST_AFTER_MS = 10_000
const EVERY_MS = 60 * 60_000

/**
 * Runs a retention sweep shortly after start and then hourly, on every instance: a sweep must be safe to run
 * twice at once (one statement, or batches of them, on rows nobody else writes). A failure is logged and the
 * next hour tries again. Returns the stopper for the plugin's onStop.
 */
export function startHourlySweep(gantry: Gantry, what: string, sweep: () => Promise<unknown>): () => void {
  const run = () =>
    void sweep().catch((err) =>
      gantry.log.warn({ err: (err as Error).message }, `${what} retention failed; retrying next hour`),
    )
  const first = setTimeout(run, FIRST_AFTER_MS)
  const every = setInterval(run, EVERY_MS)
  first.unref?.()
  every.unref?.()
  return () => {
    clearTimeout(first)
    clearInterval(every)
  }
}
