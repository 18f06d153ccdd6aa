// The desktop viewer: logs in (session cookie) when needed, starts the desktop on request, and opens noVNC
// on this same origin's /vnc/websockify bridge with the password the API hands to permitted users.
import RFB from './core/rfb.js'

const $ = (id) => document.getElementById(id)
let rfb = null

const say = (text) => {
  $('status').textContent = text
}

async function api(path, init = {}) {
  const res = await fetch(path, {
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json' },
    ...init,
  })
  const body = await res.json().catch(() => ({}))
  return { status: res.status, body }
}

function showLogin() {
  $('login').hidden = false
  $('start').hidden = true
  $('stop').hidden = true
  say('not signed in')
}

function open(status) {
  if (rfb) return
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  const session = new RFB($('screen'), `${scheme}://${location.host}/vnc/websockify`, {
    credentials: { password: status.password },
  })
  rfb = session
  session.scaleViewport = true
  session.viewOnly = status.view_only
  session.addEventListener('connect', () =>
    say(`connected to ${status.display} (${status.width}x${status.height})`),
  )
  session.addEventListener('securityfailure', (e) =>
    say(`refused: ${e.detail.reason ?? 'authentication failed'}`),
  )
  session.addEventListener('disconnect', () => {
    // A session Stop closed is over; only an unexpected end (a crash, a restart) asks the server again.
    if (rfb !== session) return
    rfb = null
    say('disconnected')
    setTimeout(refresh, 1500)
  })
}

/** Closes the viewer's session on purpose, so a Start right after opens a new one. */
function closeSession() {
  const session = rfb
  rfb = null
  session?.disconnect()
}

// Every status answer (the probe, Start's, Stop's) goes through here, so the header always matches the desktop.
function show(body) {
  $('login').hidden = true
  if (!body.permitted) {
    $('start').hidden = true
    $('stop').hidden = true
    return say('your role may not use the desktop (VNC_ALLOWED_ROLES)')
  }
  $('start').hidden = body.state === 'running' || body.state === 'unavailable'
  $('stop').hidden = body.state !== 'running'
  if (body.state === 'unavailable')
    return say(`unavailable: install ${body.missing.map((m) => m.package).join(', ')}`)
  if (body.state === 'running') return open(body)
  say(body.state + (body.last_error ? `: ${body.last_error}` : ''))
}

async function refresh() {
  const { status, body } = await api('/api/vnc/status')
  if (status === 401) return showLogin()
  if (status !== 200) return say(body.message ?? `error ${status}`)
  show(body)
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault()
  const { status, body } = await api('/api/auth/login', {
    method: 'POST',
    body: JSON.stringify({ api_key: $('key').value }),
  })
  if (status !== 200) return say(body.message ?? `sign-in failed (${status})`)
  $('key').value = ''
  refresh()
})

$('start').addEventListener('click', async () => {
  $('start').disabled = true
  say('starting…')
  const { status, body } = await api('/api/vnc/connect', { method: 'POST', body: '{}' })
  $('start').disabled = false
  if (status === 401) return showLogin()
  if (status !== 200) return say(body.message ?? `error ${status}`)
  show(body)
})

$('stop').addEventListener('click', async () => {
  $('stop').disabled = true
  closeSession()
  const { status, body } = await api('/api/vnc/disconnect', { method: 'POST', body: '{}' })
  $('stop').disabled = false
  if (status === 401) return showLogin()
  if (status !== 200) return say(body.message ?? `error ${status}`)
  show(body)
})

refresh()
