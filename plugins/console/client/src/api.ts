/**
 * The typed API client (Eden treaty over the server's own route types) and the few rules every call follows:
 * same-origin with the session cookie, a 401 anywhere shows the sign-in form (the page underneath keeps its
 * state), and a network failure marks the console offline until a call or a socket gets through again.
 */
import { treaty } from '@elysiajs/eden'
import { signal } from '@preact/signals'
import type { App } from '../../../../src/app-type.ts'

export interface Me {
  user_id: string
  user: string
  role: 'admin' | 'user'
  key_id: string | null
  key_name: string | null
  via: 'api_key' | 'session'
}

/** Who is signed in; null while unknown (first load) or signed out. */
export const me = signal<Me | null>(null)
/** True once the server said 401 to a call: the sign-in form shows over the page. */
export const needsSignIn = signal(false)
/** False while the server cannot be reached. */
export const online = signal(true)

export const api = treaty<App>(location.origin, {
  fetch: { credentials: 'same-origin' },
  onResponse(response) {
    online.value = true
    if (response.status === 401 && !response.url.endsWith('/api/auth/login')) needsSignIn.value = true
  },
})

/** An API refusal, with the server's `{error, message}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

type Result = { data: unknown; error: unknown; status: number }

/** The data of an Eden call, or an ApiError saying what the server refused; a network failure goes offline. */
export async function call<R extends Result>(request: Promise<R>): Promise<NonNullable<R['data']>> {
  let res: R
  try {
    res = await request
  } catch (err) {
    online.value = false
    throw new ApiError(0, 'offline', `The server cannot be reached (${(err as Error).message}).`)
  }
  if (res.status === 0 || (res.error && res.status >= 502 && res.status <= 504)) online.value = false
  if (res.error) {
    const body = ((res.error as { value?: unknown }).value ?? {}) as { error?: string; message?: string }
    throw new ApiError(
      res.status,
      body.error ?? 'error',
      body.message ?? `The server answered ${res.status}.`,
    )
  }
  return res.data as NonNullable<R['data']>
}

export const messageOf = (err: unknown) => (err instanceof Error ? err.message : String(err))

/** Who the server said is signed in when it served the page (none: the sign-in form, without asking). */
export function initialPrincipal(): boolean {
  const meta = document.querySelector('meta[name="gantry-principal"]')?.getAttribute('content')
  if (!meta) {
    needsSignIn.value = true
    return false
  }
  me.value = JSON.parse(meta) as Me
  return true
}

/** Asks who is signed in; a 401 shows the sign-in form. */
export async function whoAmI(): Promise<void> {
  try {
    me.value = (await call(api.api.me.get())) as Me
    needsSignIn.value = false
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) needsSignIn.value = true
  }
}

export async function signIn(key: string): Promise<void> {
  me.value = (await call(api.api.auth.login.post({ api_key: key }))) as Me
  needsSignIn.value = false
}

export async function signOut(): Promise<void> {
  await call(api.api.auth.logout.post()).catch(() => {})
  me.value = null
  needsSignIn.value = true
  document.querySelector('meta[name="gantry-principal"]')?.remove()
}
