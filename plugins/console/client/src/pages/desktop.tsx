import { useSignal } from '@preact/signals'
import { useEffect, useRef } from 'preact/hooks'
import { api, call, messageOf } from '../api.ts'
import { ErrorLine } from '../ui.tsx'

type VncStatus = Awaited<ReturnType<typeof status>>
const status = () => call(api.api.vnc.status.get())
type Rfb = import('@novnc/novnc').default

/** The agent's desktop through noVNC (loaded only here), over the server's same-origin /vnc/websockify bridge. */
export function DesktopPage() {
  const state = useSignal<VncStatus | null>(null)
  const error = useSignal('')
  const note = useSignal('')
  const viewOnly = useSignal(false)
  const screen = useRef<HTMLElement>(null)
  const rfb = useRef<Rfb | null>(null)
  const alive = useRef(true)

  const disconnectViewer = () => {
    rfb.current?.disconnect()
    rfb.current = null
  }

  const open = async (s: VncStatus) => {
    if (rfb.current || !screen.current || s.state !== 'running' || !s.password) return
    const { default: RFB } = await import('@novnc/novnc')
    if (!alive.current || rfb.current || !screen.current) return
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
    const viewer = new RFB(screen.current, `${scheme}://${location.host}/vnc/websockify`, {
      credentials: { password: s.password },
    })
    viewer.scaleViewport = true
    viewer.viewOnly = viewOnly.value
    viewer.addEventListener(
      'connect',
      () => (note.value = `Connected to ${s.display} (${s.width}×${s.height}).`),
    )
    viewer.addEventListener('disconnect', () => {
      if (rfb.current === viewer) rfb.current = null
      note.value = 'Disconnected.'
      // The desktop may have been stopped, or restarted after a crash: look again shortly.
      setTimeout(() => alive.current && refresh(), 1500)
    })
    rfb.current = viewer
  }

  const refresh = async () => {
    try {
      const s = await status()
      state.value = s
      error.value = ''
      if (s.state === 'running') await open(s)
    } catch (err) {
      error.value = messageOf(err)
    }
  }

  useEffect(() => {
    alive.current = true
    refresh()
    return () => {
      alive.current = false
      disconnectViewer()
    }
  }, [])

  const s = state.value
  const running = s?.state === 'running'
  return (
    <section class="card desktop" aria-labelledby="desktop-title">
      <div class="row spread wrap">
        <h1 id="desktop-title">Desktop</h1>
        <div class="row wrap">
          <label class="inline">
            <input
              type="checkbox"
              checked={viewOnly.value}
              onChange={(e) => {
                viewOnly.value = e.currentTarget.checked
                if (rfb.current) rfb.current.viewOnly = viewOnly.value
              }}
            />
            View only
          </label>
          {!running ? (
            <button
              type="button"
              disabled={!s?.permitted || s?.state === 'unavailable' || s?.state === 'starting'}
              onClick={async () => {
                note.value = 'Starting…'
                try {
                  const started = await call(api.api.vnc.connect.post({}))
                  state.value = started
                  await open(started)
                } catch (err) {
                  error.value = messageOf(err)
                  note.value = ''
                }
              }}
            >
              Start desktop
            </button>
          ) : (
            <button
              type="button"
              class="danger"
              onClick={async () => {
                try {
                  disconnectViewer()
                  state.value = await call(api.api.vnc.disconnect.post())
                  note.value = 'Stopped.'
                } catch (err) {
                  error.value = messageOf(err)
                }
              }}
            >
              Stop desktop
            </button>
          )}
          <button
            type="button"
            class="secondary"
            disabled={!running}
            onClick={() => screen.current?.requestFullscreen?.().catch(() => {})}
          >
            Full screen
          </button>
        </div>
      </div>
      <ErrorLine text={error.value} />
      <p class="hint" aria-live="polite">
        {s?.state === 'unavailable'
          ? `The desktop is unavailable on this server: install ${s.missing.map((m) => m.package).join(', ')}.`
          : s && !s.permitted
            ? 'Your role may not use the desktop (VNC_ALLOWED_ROLES).'
            : note.value || (s ? `The desktop is ${s.state}.` : 'Asking the server…')}
        {s?.last_error ? ` Last error: ${s.last_error}` : ''}
      </p>
      <section ref={screen} class="screen" aria-label="Desktop screen" />
    </section>
  )
}
