import { join } from 'node:path'
import { swagger } from '@elysiajs/swagger'
import { Elysia, t } from 'elysia'
import { type Gantry, gantryContext } from './context.ts'
import { ErrorBody, NotFound } from './errors.ts'
import { GENERATED_SPEC_PATH, servedDocs } from './openapi.ts'
import { fileResponse, packageDir, runtimeName } from './runtime.ts'

const OLLAMA_CACHE_MS = 5000

/** Asks Ollama for its version, remembering the answer for a few seconds so /ready stays cheap. */
async function ollamaAnswers(gantry: Gantry): Promise<boolean> {
  const cached = gantry.state.get('core:ollama') as { ok: boolean; at: number } | undefined
  if (cached && Date.now() - cached.at < OLLAMA_CACHE_MS) return cached.ok
  let ok = false
  try {
    const res = await fetch(`${gantry.config.ollamaHost}/api/version`, { signal: AbortSignal.timeout(1000) })
    ok = res.ok
    await res.body?.cancel()
  } catch {
    ok = false
  }
  gantry.state.set('core:ollama', { ok, at: Date.now() })
  return ok
}

const ReadyBody = t.Object(
  {
    status: t.Union([t.Literal('ready'), t.Literal('unavailable')]),
    database: t.Union([t.Literal('ok'), t.Literal('down')]),
    ollama: t.Union([t.Literal('ok'), t.Literal('down')]),
    plugins: t.Array(
      t.Object({
        name: t.String(),
        status: t.Union([t.Literal('loaded'), t.Literal('failed'), t.Literal('disabled')]),
      }),
    ),
  },
  { description: 'Readiness: 503 while the database is unreachable. Ollama is reported, not required.' },
)

function endpoints(gantry: Gantry): Record<string, string> {
  const list: Record<string, string> = {
    health: '/health',
    ready: '/ready',
    docs: '/docs',
    openapi: '/docs/json',
    me: '/api/me',
  }
  for (const p of gantry.plugins) if (p.status === 'loaded') Object.assign(list, p.entryPoints ?? {})
  return list
}

const placeholderPage = (gantry: Gantry) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gantry</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:42rem;margin:3rem auto;padding:0 1rem;color:#1d2433}
code{background:#f1f3f7;padding:.1rem .3rem;border-radius:4px}a{color:#2457c5}</style></head>
<body><h1>Gantry ${gantry.version}</h1>
<p>The server is up. The API is documented at <a href="/docs">/docs</a>.</p>
<p>Plugins: ${gantry.plugins.map((p) => `<code>${p.name}</code> (${p.status})`).join(', ') || 'none'}</p>
</body></html>`

/**
 * A plugin that serves the browsers' page at `GET /` puts one of these under PAGE_PROVIDER in gantry.state
 * (in onStart, removed in onStop); without one, browsers get the placeholder page above.
 */
export type PageProvider = (request: Request) => Response | Promise<Response>
export const PAGE_PROVIDER = 'core:page'

// For every page of the server (console, /docs, /vnc/): browsers ask for /favicon.ico whatever the page says.
const favicon = (file: string) => () =>
  fileResponse(join(import.meta.dirname, 'assets', file), 'public, max-age=86400')

const swaggerUiDir = () => packageDir('swagger-ui-dist')
const SWAGGER_ASSETS = new Set(['swagger-ui-bundle.js', 'swagger-ui.css', 'favicon-32x32.png'])

const docsPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gantry API</title><link rel="stylesheet" href="/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>window.onload=()=>{window.ui=SwaggerUIBundle({url:'/docs/json',dom_id:'#swagger-ui',persistAuthorization:true})}</script>
</body></html>`

/** `GET /`, `/health`, `/ready`, and the API docs (Swagger UI served from the installed package, no CDN). */
export const coreRoutes = (version: string) =>
  new Elysia({ name: 'gantry:core-routes' })
    .use(gantryContext)
    .use(
      servedDocs(
        swagger({
          provider: 'swagger-ui',
          path: '/docs/_cdn',
          specPath: GENERATED_SPEC_PATH,
          exclude: ['/docs', '/docs/_cdn', '/docs/json', GENERATED_SPEC_PATH, /^\/docs\/assets/],
          documentation: {
            info: {
              title: 'Gantry',
              version,
              description:
                'Self-hosted agent server: coding tasks, chat sessions with agents, live event streams, the agent desktop. Authenticate with `Authorization: Bearer <api key>` or the session cookie set by `POST /api/auth/login`.',
            },
            components: {
              securitySchemes: {
                bearerAuth: {
                  type: 'http',
                  scheme: 'bearer',
                  description: 'An API key (npm run keys -- create)',
                },
                cookieAuth: { type: 'apiKey', in: 'cookie', name: 'gantry_session' },
              },
            },
            security: [{ bearerAuth: [] }, { cookieAuth: [] }],
            tags: [
              { name: 'Core', description: 'Health, readiness and discovery' },
              { name: 'Auth', description: 'Login and identity' },
            ],
          },
        }),
      ),
    )
    .get('/docs', () => new Response(docsPage, { headers: { 'content-type': 'text/html; charset=utf-8' } }), {
      detail: { hide: true },
    })
    .get(
      '/docs/assets/:file',
      ({ params }) => {
        if (!SWAGGER_ASSETS.has(params.file)) throw NotFound(`Asset ${params.file}`)
        return fileResponse(join(swaggerUiDir(), params.file), 'public, max-age=86400')
      },
      { detail: { hide: true } },
    )
    .get('/favicon.ico', favicon('favicon.ico'), { detail: { hide: true } })
    .get('/favicon.svg', favicon('favicon.svg'), { detail: { hide: true } })
    .get('/health', () => ({ status: 'ok' as const }), {
      response: { 200: t.Object({ status: t.Literal('ok') }) },
      detail: {
        tags: ['Core'],
        summary: 'Liveness',
        description: 'Answers while the process runs. Public.',
        security: [],
      },
    })
    .get(
      '/ready',
      async ({ gantry, set }) => {
        const [database, ollama] = await Promise.all([gantry.store.ping(1000), ollamaAnswers(gantry)])
        if (!database) set.status = 503
        return {
          status: database ? ('ready' as const) : ('unavailable' as const),
          database: database ? ('ok' as const) : ('down' as const),
          ollama: ollama ? ('ok' as const) : ('down' as const),
          plugins: gantry.plugins.map((p) => ({ name: p.name, status: p.status })),
        }
      },
      {
        response: { 200: ReadyBody, 503: ReadyBody },
        detail: {
          tags: ['Core'],
          summary: 'Readiness',
          description: 'Database and Ollama reachability and the plugins loaded. Public, minimal detail.',
          security: [],
        },
      },
    )
    .get(
      '/',
      ({ gantry, request }) => {
        const accept = request.headers.get('accept') ?? ''
        if (accept.includes('text/html')) {
          const page = gantry.state.get(PAGE_PROVIDER) as PageProvider | undefined
          if (page) return page(request)
          return new Response(placeholderPage(gantry), {
            headers: { 'content-type': 'text/html; charset=utf-8' },
          })
        }
        return {
          name: 'gantry',
          version: gantry.version,
          runtime: runtimeName,
          status: gantry.stopping ? 'stopping' : 'running',
          endpoints: endpoints(gantry),
          plugins: gantry.plugins.map((p) => ({
            name: p.name,
            status: p.status,
            ...(p.error ? { error: p.error } : {}),
          })),
        }
      },
      {
        response: {
          200: t.Union([
            t.Object({
              name: t.String(),
              version: t.String(),
              runtime: t.String({ description: 'What serves it, e.g. "bun 1.4.5" or "deno 2.9.6"' }),
              status: t.String(),
              endpoints: t.Record(t.String(), t.String()),
              plugins: t.Array(
                t.Object({ name: t.String(), status: t.String(), error: t.Optional(t.String()) }),
              ),
            }),
            t.Any({ description: 'HTML console for browsers (Accept: text/html)' }),
          ]),
          500: ErrorBody,
        },
        detail: {
          tags: ['Core'],
          summary: 'Discovery',
          description:
            'For API clients: name, version, status and the entry points of the loaded plugins. For browsers: the console.',
          security: [],
        },
      },
    )
