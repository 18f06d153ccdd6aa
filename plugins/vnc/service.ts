import { join } from 'node:path'
import type { Static } from 'elysia'
import type { Principal } from '../../src/core/auth.ts'
import type { Gantry } from '../../src/core/context.ts'
import { Conflict, HttpError } from '../../src/core/errors.ts'
import { findBinaries } from './binaries.ts'
import { DEFAULT_SIZE, Desktop, type DesktopSize } from './desktop.ts'
import { ProcessLedger } from './leftovers.ts'
import type { ConnectBody, VncStatus } from './model.ts'

const STATE_KEY = 'vnc:desktop'

export const VIEWER_PATH = '/vnc/'
export const BRIDGE_PATH = '/vnc/websockify'

/** Creates this app's desktop supervisor (binaries are looked up once, here). */
export function openDesktop(gantry: Gantry): Desktop {
  const binaries = findBinaries()
  const ledger = new ProcessLedger(join(gantry.config.dataDir, 'vnc-processes'))
  ledger.sweep(gantry.log)
  const desktop = new Desktop({ log: gantry.log, binaries, ledger })
  if (desktop.unavailable)
    gantry.log.warn(
      { plugin: 'vnc', missing: binaries.missing },
      'desktop unavailable: install the missing packages to enable it',
    )
  gantry.state.set(STATE_KEY, desktop)
  return desktop
}

/** This app's desktop; the plugin's onStart created it. */
export function desktopOf(gantry: Gantry): Desktop {
  const desktop = gantry.state.get(STATE_KEY) as Desktop | undefined
  if (!desktop)
    throw new HttpError(
      503,
      'desktop_unavailable',
      'The desktop plugin is not started yet (or is stopping); retry shortly.',
    )
  return desktop
}

export async function closeDesktop(gantry: Gantry): Promise<void> {
  const desktop = gantry.state.get(STATE_KEY) as Desktop | undefined
  if (!desktop) return
  await desktop.stop('server shutting down')
  gantry.state.delete(STATE_KEY)
}

/** Whether this user may view and drive the desktop (VNC_ALLOWED_ROLES, admins by default). */
export const mayUseDesktop = (gantry: Gantry, user: Principal) =>
  gantry.config.vncAllowedRoles.includes(user.role)

/**
 * The desktop as a user may see it: everyone signed in sees the state; only permitted users get the
 * URLs, the password and the process ids.
 */
export function describeDesktop(
  desktop: Desktop,
  permitted: boolean,
  origin: { http: string; ws: string },
  message?: string,
): Static<typeof VncStatus> {
  const running = desktop.state === 'running'
  return {
    state: desktop.state,
    display: desktop.display === null ? null : `:${desktop.display}`,
    width: desktop.size.width,
    height: desktop.size.height,
    view_only: desktop.size.viewOnly,
    viewer_url: permitted ? `${origin.http}${VIEWER_PATH}` : null,
    websocket_url: permitted ? `${origin.ws}${BRIDGE_PATH}` : null,
    ...(permitted && running && desktop.password ? { password: desktop.password } : {}),
    started_at: desktop.startedAt?.toISOString() ?? null,
    restarts: desktop.restarts,
    last_error: desktop.lastError,
    missing: desktop.binaries.missing,
    permitted,
    ...(permitted ? { processes: desktop.pids() } : {}),
    ...(message ? { message } : {}),
  }
}

/**
 * Starts the desktop, or joins the start under way, or returns the running one. Asking a running (or
 * starting) desktop for another size or view-only mode is a conflict: it would take it from under its users.
 */
export async function connectDesktop(desktop: Desktop, body: Static<typeof ConnectBody> | undefined) {
  if (desktop.state === 'unavailable')
    throw new HttpError(
      503,
      'desktop_unavailable',
      `The desktop cannot start: ${desktop.binaries.missing.map((m) => `${m.binary} (apt install ${m.package})`).join(', ')} missing.`,
      { missing: desktop.binaries.missing },
    )
  const active = desktop.state === 'running' || desktop.state === 'starting'
  const wanted: DesktopSize = {
    width: body?.width ?? (active ? desktop.size.width : DEFAULT_SIZE.width),
    height: body?.height ?? (active ? desktop.size.height : DEFAULT_SIZE.height),
    viewOnly: body?.view_only ?? (active ? desktop.size.viewOnly : DEFAULT_SIZE.viewOnly),
  }
  if (active) {
    const current = desktop.size
    if (
      wanted.width !== current.width ||
      wanted.height !== current.height ||
      wanted.viewOnly !== current.viewOnly
    )
      throw Conflict(
        `The desktop is ${desktop.state} at ${current.width}x${current.height}${current.viewOnly ? ' (view only)' : ''}; disconnect first to change its size or view-only mode.`,
        {
          state: desktop.state,
          width: current.width,
          height: current.height,
          view_only: current.viewOnly,
        },
      )
  }
  const wasStarting = desktop.state === 'starting'
  try {
    await desktop.start(wanted)
  } catch (err) {
    if (desktop.state === 'stopped')
      throw Conflict(`The desktop was disconnected while it was starting.`, { state: desktop.state })
    throw new HttpError(503, 'desktop_failed', (err as Error).message, {
      last_error: desktop.lastError,
      restarts: desktop.restarts,
    })
  }
  return active ? (wasStarting ? 'joined the start under way' : 'already running') : 'started'
}
