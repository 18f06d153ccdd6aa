import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

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

const attribute = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/**
 * The console's page for `GET /`: the built index.html (never cached, so a new build is picked up at once),
 * or, while there is no build, a 503 page that says why instead of an error. The page names who is signed in
 * (a `<meta>` the client reads; no inline script), so a signed-out browser shows the sign-in form without first
 * asking `/api/me` for a 401.
 */
export function consolePage(
  dist: string,
  building: () => boolean,
  whoIs: (request: Request) => Promise<object | null> = async () => null,
) {
  let cached: { mtime: number; html: string } | undefined
  return async (request?: Request): Promise<Response> => {
    const index = join(dist, 'index.html')
    if (existsSync(index)) {
      const mtime = statSync(index).mtimeMs
      if (cached?.mtime !== mtime) cached = { mtime, html: readFileSync(index, 'utf8') }
      const principal = request ? await whoIs(request) : null
      const html = principal
        ? cached.html.replace(
            '<head>',
            `<head>\n    <meta name="gantry-principal" content="${attribute(JSON.stringify(principal))}" />`,
          )
        : cached.html
      return new Response(html, {
        headers: {
          ...SECURITY_HEADERS,
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-cache',
        },
      })
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
