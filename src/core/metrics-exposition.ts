/**
 * The exposition of GET /metrics: what metrics.ts recorded, and the scraped Gantry's live state, through
 * prom-client's registry (which also brings the process's CPU, memory and event-loop lag).
 */
import { collectDefaultMetrics, Registry } from 'prom-client'
import type { Gantry } from './context.ts'
import { recorded, type Series } from './metrics.ts'

type Labels = Record<string, string | number>
const {
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
} = recorded

interface Sample {
  metricName?: string
  labels?: Labels
  value: number
}

function histogramSamples(name: string, labels: Labels, s: Series): Sample[] {
  const out: Sample[] = []
  let cumulative = 0
  for (let i = 0; i < s.bounds.length; i++) {
    cumulative += s.counts[i]!
    out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: s.bounds[i]! }, value: cumulative })
  }
  out.push({ metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: s.count })
  out.push({ metricName: `${name}_sum`, labels, value: s.sum })
  out.push({ metricName: `${name}_count`, labels, value: s.count })
  return out
}

/** A metric prom-client's registry formats, whose samples are computed when scraped. */
function collected(
  name: string,
  help: string,
  type: 'counter' | 'gauge' | 'histogram',
  samples: () => Sample[],
) {
  return { name, help, type, get: async () => ({ name, help, type, aggregator: 'sum', values: samples() }) }
}

/** The scrape-time view of one Gantry: what its plugins hold right now. */
async function liveState(gantry: Gantry) {
  // The websocket plugin's registry of live sockets, read as it stands: counting costs its hot path nothing.
  const sockets = (gantry.state.get('websocket:sockets') as { sockets?: Map<unknown, unknown> } | undefined)
    ?.sockets?.size
  const stats = (
    gantry.events as { stats?: () => { streams: number; subscribers: number; queued: number } }
  ).stats?.()
  const queue = await gantry.store
    .query<{ kind: string; status: string; n: number }>(
      `select kind, status, count(*)::int as n from jobs where status in ('queued', 'running') group by kind, status`,
    )
    .catch(() => [])
  return { sockets: sockets ?? 0, connections: gantry.connections.size, stats, queue }
}

const jobKinds = new Set<string>()
let registry: Registry | undefined
let current: Awaited<ReturnType<typeof liveState>> | undefined

function buildRegistry(): Registry {
  const r = new Registry()
  collectDefaultMetrics({ register: r })
  const register = (m: ReturnType<typeof collected>) => r.registerMetric(m as never)
  register(
    collected(
      'gantry_http_request_duration_seconds',
      'HTTP requests by method, route template and status',
      'histogram',
      () =>
        [...http.entries()].flatMap(([method, route, status, s]) =>
          histogramSamples('gantry_http_request_duration_seconds', { method, route, status }, s),
        ),
    ),
  )
  register(
    collected('gantry_websockets_open', 'Open WebSockets (task/session events and chat)', 'gauge', () => [
      { value: current?.sockets ?? 0 },
    ]),
  )
  register(
    collected('gantry_sse_streams_open', 'Open live streams other than WebSockets (SSE)', 'gauge', () => [
      { value: Math.max(0, (current?.connections ?? 0) - (current?.sockets ?? 0)) },
    ]),
  )
  register(
    collected('gantry_event_subscribers', 'Subscribers of event streams on this instance', 'gauge', () => [
      { value: current?.stats?.subscribers ?? 0 },
    ]),
  )
  register(
    collected('gantry_event_streams_open', 'Event streams with subscribers on this instance', 'gauge', () => [
      { value: current?.stats?.streams ?? 0 },
    ]),
  )
  register(
    collected('gantry_events_queued', 'Events waiting for the next flush of the event log', 'gauge', () => [
      { value: current?.stats?.queued ?? 0 },
    ]),
  )
  register(
    collected(
      'gantry_events_appended_total',
      'Events committed to the event log by this instance',
      'counter',
      () => [{ value: events.appended }],
    ),
  )
  register(
    collected(
      'gantry_events_delivered_total',
      'Events handed to subscribers on this instance',
      'counter',
      () => [{ value: events.delivered }],
    ),
  )
  register(
    collected(
      'gantry_event_delivery_lag_seconds',
      'From an event’s append to its fan-out here',
      'histogram',
      () => histogramSamples('gantry_event_delivery_lag_seconds', {}, events.lag),
    ),
  )
  register(
    collected(
      'gantry_jobs',
      'Jobs in the queue by kind and state (all instances: read from the database)',
      'gauge',
      () => {
        // An emptied queue reads 0 rather than vanishing, for every kind seen since the start.
        for (const q of current?.queue ?? []) jobKinds.add(q.kind)
        for (const [kind] of jobOutcomes.entries()) jobKinds.add(kind)
        return [...jobKinds].flatMap((kind) =>
          ['queued', 'running'].map((state) => ({
            labels: { kind, state },
            value: Number(current?.queue.find((q) => q.kind === kind && q.status === state)?.n ?? 0),
          })),
        )
      },
    ),
  )
  register(
    collected('gantry_job_outcomes_total', 'Job attempts ended here, by kind and outcome', 'counter', () =>
      [...jobOutcomes.entries()].map(([kind, outcome, n]) => ({ labels: { kind, outcome }, value: n })),
    ),
  )
  register(
    collected(
      'gantry_job_duration_seconds',
      'From a job’s creation to its end (tasks, chat answers)',
      'histogram',
      () =>
        [...jobDurations.entries()].flatMap(([kind, , , s]) =>
          histogramSamples('gantry_job_duration_seconds', { kind }, s),
        ),
    ),
  )
  register(
    collected(
      'gantry_job_takeovers_total',
      'Jobs this instance took over (a lease expired or was handed back)',
      'counter',
      () => [...jobTakeovers.entries()].map(([kind, , n]) => ({ labels: { kind }, value: n })),
    ),
  )
  register(
    collected('gantry_chat_tokens_per_second', 'Generation speed of chat answers', 'histogram', () =>
      histogramSamples('gantry_chat_tokens_per_second', {}, chat.tokensPerSecond),
    ),
  )
  register(
    collected('gantry_chat_first_token_seconds', 'Time to the first token of chat answers', 'histogram', () =>
      histogramSamples('gantry_chat_first_token_seconds', {}, chat.firstToken),
    ),
  )
  register(
    collected(
      'gantry_ollama_request_duration_seconds',
      'Calls to Ollama, to response headers, by API path',
      'histogram',
      () =>
        [...ollamaLatency.entries()].flatMap(([path, , , s]) =>
          histogramSamples('gantry_ollama_request_duration_seconds', { path }, s),
        ),
    ),
  )
  register(
    collected(
      'gantry_ollama_errors_total',
      'Failed calls to Ollama by API path and status (or unreachable)',
      'counter',
      () => [...ollamaErrors.entries()].map(([path, error, n]) => ({ labels: { path, error }, value: n })),
    ),
  )
  register(
    collected(
      'gantry_sandbox_runs_total',
      'Runs of generated code, by the limit that stopped them (none)',
      'counter',
      () => [...sandboxRuns.entries()].map(([stopped_by, , n]) => ({ labels: { stopped_by }, value: n })),
    ),
  )
  register(
    collected('gantry_sandbox_run_duration_seconds', 'Wall-clock time of sandbox runs', 'histogram', () =>
      histogramSamples('gantry_sandbox_run_duration_seconds', {}, sandboxDurations),
    ),
  )
  return r
}

let scrapes: Promise<unknown> = Promise.resolve()

/** The whole exposition for one scrape of `gantry`, in Prometheus's text format. */
export function renderMetrics(gantry: Gantry): Promise<{ contentType: string; text: string }> {
  // One scrape at a time: `current` is the scraped Gantry's state while the registry formats it.
  const scrape = scrapes.then(async () => {
    registry ??= buildRegistry()
    current = await liveState(gantry)
    return { contentType: registry.contentType, text: await registry.metrics() }
  })
  scrapes = scrape.catch(() => {})
  return scrape
}
