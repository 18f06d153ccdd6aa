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
  say('not logged in')
}

function open(status) {
  if (rfb) return
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws'
  rfb = new RFB($('screen'), `${scheme}://${location.host}/vnc/websockify`, {
    credentials: { password: status.password },
  })
  rfb.scaleViewport = true
  rfb.viewOnly = status.view_only
  rfb.addEventListener('connect', () =>
    say(`connected to ${status.display} (${status.width}x${status.height})`),
  )
  rfb.addEventListener('securityfailure', (e) =>
    say(`refused: ${e.detail.reason ?? 'authentication failed'}`),
  )
  rfb.addEventListener('disconnect', () => {
    rfb = null
    say('disconnected')
    setTimeout(refresh, 1500)
  })
}

async function refresh() {
  const { status, body } = await api('/api/vnc/status')
  if (status === 401) return showLogin()
  $('login').hidden = true
  if (status !== 200) return say(body.message ?? `error ${status}`)
  if (!body.permitted) return say('your role may not use the desktop (VNC_ALLOWED_ROLES)')
  $('start').hidden = body.state === 'running' || body.state === 'unavailable'
  $('stop').hidden = body.state !== 'running'
  if (body.state === 'unavailable')
    return say(`unavailable: install ${body.missing.map((m) => m.package).join(', ')}`)
  if (body.state === 'running') return open(body)
  say(body.state + (body.last_error ? `: ${body.last_error}` : ''))
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault()
  const { status, body } = await api('/api/auth/login', {
    method: 'POST',
    body: JSON.stringify({ api_key: $('key').value }),
  })
  if (status !== 200) return say(body.message ?? `login failed (${status})`)
  $('key').value = ''
  refresh()
})

$('start').addEventListener('click', async () => {
  say('starting…')
  const { status, body } = await api('/api/vnc/connect', { method: 'POST', body: '{}' })
  if (status !== 200) return say(body.message ?? `error ${status}`)
  open(body)
})

$('stop').addEventListener('click', async () => {
  await api('/api/vnc/disconnect', { method: 'POST', body: '{}' })
  rfb?.disconnect()
})

refresh()
