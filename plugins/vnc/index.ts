import { join } from 'node:path'
import { staticPlugin } from '@elysiajs/static'
import { Elysia, t } from 'elysia'
import { auth, authenticate } from '../../src/core/auth.ts'
import { type Gantry, gantryContext, gantryOf } from '../../src/core/context.ts'
import { ErrorBody, Forbidden, Unauthorized } from '../../src/core/errors.ts'
import { originAllowed, publicOrigin } from '../../src/core/http.ts'
import type { PluginMeta } from '../../src/core/loader.ts'
import { fileResponse, packageDir } from '../../src/core/runtime.ts'
import { upgradeSocket } from '../websocket/connection.ts'
import { BridgeConnection, createBridge } from './bridge.ts'
import { registerComputer } from './computer.ts'
import { ConnectBody, VncStatus } from './model.ts'
import {
  BRIDGE_PATH,
  closeDesktop,
  connectDesktop,
  describeDesktop,
  desktopOf,
  mayUseDesktop,
  openDesktop,
} from './service.ts'

export const meta: PluginMeta = {
  optional: true,
  description: 'The agent’s virtual desktop (Xvfb + x11vnc), viewed in the browser with noVNC',
  entryPoints: { vnc: '/vnc/', vnc_status: '/api/vnc/status' },
}

const novnc = packageDir('@novnc/novnc')
const viewerDir = join(import.meta.dirname, 'viewer')
const hidden = { hide: true }
// noVNC's own modules and its vendored pako, exactly the two folders rfb.js imports from; nothing else. On Deno,
// where `@elysiajs/static` sends no content type, the runtime seam adds it from the file name (browsers refuse a
// module script without one).
const novncFolder = (folder: string) =>
  staticPlugin({
    assets: join(novnc, folder),
    prefix: `/vnc/${folder}`,
    indexHTML: false,
    headers: { 'Cache-Control': 'public, max-age=86400', 'X-Content-Type-Options': 'nosniff' },
    detail: hidden,
    silent: true,
  })
const novncCore = await novncFolder('core')
const novncVendor = await novncFolder('vendor')

// Same-origin only: the page, its script and noVNC come from here; the socket goes back here.
const VIEWER_CSP =
  "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; frame-ancestors 'self'"

const viewerFile = (name: string) => () => {
  const res = fileResponse(join(viewerDir, name), 'no-cache')
  res.headers.set('content-security-policy', VIEWER_CSP)
  return res
}

const forbidden = () =>
  Forbidden('Your role may not use the desktop (VNC_ALLOWED_ROLES allows admins by default).')

/**
 * The vnc plugin: the agent desktop's lifecycle (`/api/vnc/*`), the noVNC viewer under `/vnc/`, the
 * RFB-over-WebSocket bridge at `/vnc/websockify`, and the `computer` tool for the desktop agent.
 */
export default new Elysia({ name: 'vnc', tags: ['Desktop'] })
  .use(gantryContext)
  .use(auth)
  .use(novncCore)
  .use(novncVendor)
  .get(
    '/api/vnc/status',
    ({ gantry, request, user }) =>
      describeDesktop(desktopOf(gantry), mayUseDesktop(gantry, user), publicOrigin(request, gantry)),
    {
      auth: true,
      response: { 200: VncStatus, 401: ErrorBody, 503: ErrorBody },
      detail: {
        summary: 'Desktop status',
        description:
          'The state of the agent desktop, for any signed-in user. Users allowed to use the desktop (VNC_ALLOWED_ROLES, admins by default) also get the viewer and WebSocket URLs, the VNC password and the process ids.',
      },
    },
  )
  .post(
    '/api/vnc/connect',
    async ({ gantry, request, user, body }) => {
      if (!mayUseDesktop(gantry, user)) throw forbidden()
      const desktop = desktopOf(gantry)
      const outcome = await connectDesktop(desktop, body ?? undefined)
      return describeDesktop(desktop, true, publicOrigin(request, gantry), `The desktop ${outcome}.`)
    },
    {
      auth: true,
      body: t.Optional(ConnectBody),
      response: {
        200: VncStatus,
        401: ErrorBody,
        403: ErrorBody,
        409: ErrorBody,
        422: ErrorBody,
        503: ErrorBody,
      },
      detail: {
        summary: 'Start the desktop',
        description:
          'Starts Xvfb (a free display), a window manager when installed, and x11vnc on 127.0.0.1 with a new password, and answers once the VNC port answers. Idempotent: a running desktop is returned as it is, and a call during a start waits for that start. Asking for another size or view-only mode while it runs is 409. 503 when the binaries are missing (`missing` lists the packages) or the start failed.',
      },
    },
  )
  .post(
    '/api/vnc/disconnect',
    async ({ gantry, request, user }) => {
      if (!mayUseDesktop(gantry, user)) throw forbidden()
      const desktop = desktopOf(gantry)
      const before = desktop.state
      const stopped = await desktop.stop('disconnect requested')
      const message = stopped
        ? 'The desktop was stopped; none of its processes is left.'
        : `The desktop was not running (${before}); nothing to stop.`
      return describeDesktop(desktop, true, publicOrigin(request, gantry), message)
    },
    {
      auth: true,
      response: { 200: VncStatus, 401: ErrorBody, 403: ErrorBody, 503: ErrorBody },
      detail: {
        summary: 'Stop the desktop',
        description:
          'Stops every process of the stack (each in its own process group) and closes the viewers. Idempotent: when nothing runs it says so.',
      },
    },
  )
  .get('/vnc/', viewerFile('index.html'), { detail: hidden })
  .get('/vnc/index.html', viewerFile('index.html'), { detail: hidden })
  .get('/vnc/viewer.js', viewerFile('viewer.js'), { detail: hidden })
  .get('/vnc/viewer.css', viewerFile('viewer.css'), { detail: hidden })
  .get(
    BRIDGE_PATH,
    async ({ gantry, request, set }) => {
      if (!originAllowed(request, gantry))
        throw Forbidden(`Origin ${request.headers.get('origin')} may not open the desktop.`)
      const user = await authenticate(gantry, request)
      if (!user) throw Unauthorized()
      if (!mayUseDesktop(gantry, user)) throw forbidden()
      // websockify's clients may ask for the "binary" subprotocol; agreeing keeps them happy.
      const offered = request.headers.get('sec-websocket-protocol')
      const binary = offered?.split(',').some((p) => p.trim() === 'binary')
      if (binary) set.headers['sec-websocket-protocol'] = 'binary'
      const connection = new BridgeConnection(gantry, bridgeOf(gantry))
      return upgradeSocket(gantry, request, connection, set.headers, binary ? 'binary' : undefined)
    },
    {
      detail: {
        summary: 'VNC bridge',
        description:
          'RFB over WebSocket (binary frames) to the desktop’s x11vnc. Needs a user allowed to use the desktop (Bearer key or session cookie) and an allowed Origin; refused with 401/403 before the upgrade.',
      },
    },
  )
  .onStart(async (app) => {
    const gantry = gantryOf(app)
    openDesktop(gantry)
    gantry.state.set('vnc:bridge', createBridge())
    gantry.state.set('vnc:unregister', registerComputer(gantry))
  })
  .onStop(async (app) => {
    const gantry = gantryOf(app)
    ;(gantry.state.get('vnc:unregister') as (() => void) | undefined)?.()
    gantry.state.delete('vnc:unregister')
    await closeDesktop(gantry)
  })

function bridgeOf(gantry: Gantry) {
  return gantry.state.get('vnc:bridge') as ReturnType<typeof createBridge>
}
