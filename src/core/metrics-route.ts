import { timingSafeEqual } from 'node:crypto'
import { Elysia, t } from 'elysia'
import { authenticate } from './auth.ts'
import { type Gantry, gantryContext } from './context.ts'
import { ErrorBody, Forbidden, Unauthorized } from './errors.ts'
import { BEARER } from './http.ts'
import { renderMetrics } from './metrics-exposition.ts'

const sameSecret = (a: string, b: string) => {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** Lets a scrape through with METRICS_TOKEN as its bearer token, or for an admin; never for anyone else. */
async function allowScrape(gantry: Gantry, request: Request): Promise<void> {
  const token = gantry.config.metricsToken
  const bearer = BEARER.exec(request.headers.get('authorization') ?? '')?.[1]
  if (token && bearer && sameSecret(bearer, token)) return
  const user = await authenticate(gantry, request)
  if (!user) throw Unauthorized('Send METRICS_TOKEN or an admin API key as "Authorization: Bearer <token>".')
  if (user.role !== 'admin') throw Forbidden('Metrics are for admins and for the METRICS_TOKEN scraper.')
}

/** `GET /metrics`: Prometheus's text format, for admins or the METRICS_TOKEN scraper. */
export const metricsRoutes = new Elysia({ name: 'gantry:metrics', tags: ['Operations'] })
  .use(gantryContext)
  .get(
    '/metrics',
    async ({ gantry, request }) => {
      await allowScrape(gantry, request)
      const { contentType, text } = await renderMetrics(gantry)
      return new Response(text, { headers: { 'content-type': contentType, 'cache-control': 'no-store' } })
    },
    {
      response: {
        200: t.String({ description: 'Prometheus text exposition format' }),
        401: ErrorBody,
        403: ErrorBody,
      },
      detail: {
        summary: 'Prometheus metrics',
        description:
          'HTTP requests by route and status, live sockets and streams, the event log, the job queue, chat and Ollama figures, sandbox runs, process CPU, memory and event-loop lag. `Authorization: Bearer <METRICS_TOKEN>` or an admin key.',
      },
    },
  )
