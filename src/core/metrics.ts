/**
 * Prometheus metrics for GET /metrics (metrics-route.ts, formatted by metrics-exposition.ts), per process: Prometheus scrapes each instance.
 *
 * Two kinds of figures. What changes on hot paths (an HTTP request, an event fanned out, a job ending) is kept in
 * plain numbers and arrays here, touched by one-line `record…`/`observe…` calls and formatted only when scraped:
 * no label objects, hashing or string building per request. What already exists as state (open sockets,
 * subscribers, queued jobs) is read when scraped and costs nothing in between.
 */
/** Bucket bounds (seconds unless named otherwise) and the counts for one labelled series. */
class Series {
  readonly counts: Float64Array
  sum = 0
  count = 0
  constructor(readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1)
  }
  observe(value: number): void {
    let i = 0
    while (i < this.bounds.length && value > this.bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }
}

const LATENCY = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const LAG = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]
const DURATION = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]
const TOKENS_PER_SECOND = [1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 400]
const FIRST_TOKEN = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]

/** series keyed by up to three label values, created on first use. */
class Family {
  readonly tree = new Map<string, Map<string, Map<string | number, Series>>>()
  constructor(readonly bounds: readonly number[]) {}
  at(a: string, b = '', c: string | number = ''): Series {
    let l1 = this.tree.get(a)
    if (!l1) {
      l1 = new Map()
      this.tree.set(a, l1)
    }
    let l2 = l1.get(b)
    if (!l2) {
      l2 = new Map()
      l1.set(b, l2)
    }
    let series = l2.get(c)
    if (!series) {
      series = new Series(this.bounds)
      l2.set(c, series)
    }
    return series
  }
  *entries(): Generator<[string, string, string | number, Series]> {
    for (const [a, l1] of this.tree) for (const [b, l2] of l1) for (const [c, s] of l2) yield [a, b, c, s]
  }
}

/** Counters keyed by up to two label values. */
class Counts {
  readonly values = new Map<string, Map<string, number>>()
  add(a: string, b = '', n = 1): void {
    let l1 = this.values.get(a)
    if (!l1) {
      l1 = new Map()
      this.values.set(a, l1)
    }
    l1.set(b, (l1.get(b) ?? 0) + n)
  }
  *entries(): Generator<[string, string, number]> {
    for (const [a, l1] of this.values) for (const [b, n] of l1) yield [a, b, n]
  }
}

export type { Counts, Family, Series }

const http = new Family(LATENCY)
const events = { appended: 0, delivered: 0, lag: new Series(LAG) }
const jobOutcomes = new Counts()
const jobDurations = new Family(DURATION)
const jobTakeovers = new Counts()
const chat = { tokensPerSecond: new Series(TOKENS_PER_SECOND), firstToken: new Series(FIRST_TOKEN) }
const ollamaLatency = new Family(LATENCY)
const ollamaErrors = new Counts()
const sandboxRuns = new Counts()
const sandboxDurations = new Series(DURATION)

/** One finished HTTP request: `route` is the matched route template (`/tasks/:id`), never the raw path. */
export function observeHttpRequest(
  method: string,
  route: string | undefined,
  status: number,
  ms: number,
): void {
  http.at(method, route || '(unmatched)', status).observe(ms / 1000)
}

/** Events committed by one flush of the event log. */
export function recordEventsAppended(count: number): void {
  events.appended += count
}

/** One event fanned out to `subscribers` on this instance; its lag is from its append to now. */
export function recordEventFanOut(timestamp: string, subscribers: number): void {
  events.delivered += subscribers
  const lag = (Date.now() - Date.parse(timestamp)) / 1000
  if (lag >= 0) events.lag.observe(lag)
}

/**
 * A job attempt ended. `status` is the runner's outcome (succeeded, failed, cancelled, released); durations are
 * counted from the job's creation for the final outcomes only, so a task resumed elsewhere is timed once, whole.
 */
export function recordJobOutcome(kind: string, status: string, createdAt: Date): void {
  jobOutcomes.add(kind, status)
  if (status !== 'released') jobDurations.at(kind).observe((Date.now() - createdAt.getTime()) / 1000)
}

/** A job claimed for another attempt: its lease expired on a dead instance, or a stopping one handed it back. */
export function recordJobClaimed(kind: string, attempts: number): void {
  if (attempts > 1) jobTakeovers.add(kind)
}

/** A chat answer's figures (from the generation's `done` metrics). */
export function observeChatAnswer(m: {
  first_token_ms: number | null
  tokens_per_second: number | null
}): void {
  if (m.first_token_ms !== null) chat.firstToken.observe(m.first_token_ms / 1000)
  if (m.tokens_per_second !== null) chat.tokensPerSecond.observe(m.tokens_per_second)
}

/**
 * A `fetch` for the ollama client (`new Ollama({ host, fetch: ollamaFetch })`): times each call to its response
 * headers and counts failures by API path.
 */
export const ollamaFetch: typeof fetch = Object.assign(
  async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url
    const path = /\/api\/\w+/.exec(url)?.[0] ?? 'other'
    const started = performance.now()
    try {
      const res = await fetch(input, init)
      ollamaLatency.at(path).observe((performance.now() - started) / 1000)
      if (!res.ok) ollamaErrors.add(path, String(res.status))
      return res
    } catch (err) {
      ollamaErrors.add(path, (err as Error)?.name === 'AbortError' ? 'aborted' : 'unreachable')
      throw err
    }
  },
  { preconnect: fetch.preconnect },
)

/** Which limit stopped a run of generated code, if any. */
export function sandboxStop(r: {
  exitCode: number | null
  timedOut: boolean
  cancelled: boolean
  truncated: boolean
}) {
  if (r.cancelled) return 'cancelled'
  if (r.timedOut) return 'wall_clock'
  if (r.truncated) return 'output'
  // prlimit's CPU, memory and process limits end a run by a signal (exit 128 + n, or no code at all).
  if (r.exitCode === null || r.exitCode >= 128) return 'signal'
  return 'none'
}

/** One run of generated code in the sandbox, begun at `startedAt` (performance.now()). */
export function recordSandboxRun(r: Parameters<typeof sandboxStop>[0], startedAt: number): void {
  sandboxRuns.add(sandboxStop(r))
  sandboxDurations.observe((performance.now() - startedAt) / 1000)
}

/** Everything recorded so far, for the exposition (metrics-exposition.ts). */
export const recorded = {
  http,
  events,
  jobOutcomes,
  jobDurations,
  jobTakeovers,
  chat,
  ollamaLatency,
  ollamaErrors,
  sandboxRuns,
  sandboxDurations,
}
