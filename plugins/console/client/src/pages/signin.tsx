import { useSignal } from '@preact/signals'
import { messageOf, signIn } from '../api.ts'

/** The sign-in form: an API key is exchanged for the HttpOnly session cookie; the key is not kept. */
export function SignIn() {
  const key = useSignal('')
  const error = useSignal('')
  const busy = useSignal(false)
  return (
    <section class="signin" aria-labelledby="signin-title">
      <h1 id="signin-title">Sign in to Gantry</h1>
      <form
        onSubmit={async (event) => {
          event.preventDefault()
          busy.value = true
          error.value = ''
          try {
            await signIn(key.value.trim())
            key.value = ''
          } catch (err) {
            error.value = messageOf(err)
          } finally {
            busy.value = false
          }
        }}
      >
        <label for="api-key">API key</label>
        <input
          id="api-key"
          type="password"
          autocomplete="current-password"
          required
          value={key.value}
          onInput={(e) => {
            key.value = e.currentTarget.value
          }}
        />
        <button type="submit" disabled={busy.value}>
          Sign in
        </button>
        {error.value && (
          <p class="error" role="alert">
            {error.value}
          </p>
        )}
      </form>
      <p class="hint">
        The server printed an admin key on its first start (also in <code>data/admin-api-key</code>). More
        keys: <code>npm run keys -- create --user you</code>.
      </p>
    </section>
  )
}
