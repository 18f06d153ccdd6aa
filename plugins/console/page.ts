import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { fileResponse } from '../../src/core/runtime.ts'

/**
 * Everything the console loads comes from this origin; no inline script, no eval, and no framing (noVNC draws
 * on a canvas and talks over a same-origin WebSocket, which `'self'` covers).
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ')

const SECURITY_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
}

const notice = (title: string, body: string, refresh: boolean) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
${refresh ? '<meta http-equiv="refresh" content="2">' : ''}<title>Gantry: ${title}</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml"></head>
<body><h1>${title}</h1><p>${body}</p><p>The API answers meanwhile; it is documented at <a href="/docs">/docs</a>.</p></body></html>`

/**
 * The console's page for `GET /`: the built index.html (never cached, so a new build is picked up at once),
 * or, while there is no build, a 503 page that says why instead of an error.
 */
export function consolePage(dist: string, building: () => boolean) {
  return (): Response => {
    const index = join(dist, 'index.html')
    if (existsSync(index)) {
      const res = fileResponse(index, 'no-cache')
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.headers.set(k, v)
      res.headers.set('content-type', 'text/html; charset=utf-8')
      return res
    }
    const html = building()
      ? notice(
          'The console is being built',
          'This takes a few seconds on the first start; this page reloads by itself.',
          true,
        )
      : notice(
          'The console is not built',
          'Its build is missing and no build is running. Run <code>npm run build:console</code> (or restart the server, which builds it), then reload; the server log says why the last build failed.',
          false,
        )
    return new Response(html, {
      status: 503,
      headers: {
        ...SECURITY_HEADERS,
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'retry-after': '2',
      },
    })
  }
}
