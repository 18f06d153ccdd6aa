import './style.css'
import { render } from 'preact'
import { useEffect } from 'preact/hooks'
import { initialPrincipal, me, needsSignIn, online, signOut, whoAmI } from './api.ts'
import { streamsDown } from './live.ts'
import { AdminPage } from './pages/admin.tsx'
import { ChatPage } from './pages/chat.tsx'
import { DesktopPage } from './pages/desktop.tsx'
import { SignIn } from './pages/signin.tsx'
import { StatusPage } from './pages/status.tsx'
import { TaskPage } from './pages/task.tsx'
import { TasksPage } from './pages/tasks.tsx'
import { href, route } from './route.ts'

const NAV = [
  ['tasks', 'Tasks'],
  ['chat', 'Chat'],
  ['desktop', 'Desktop'],
  ['status', 'Status'],
] as const

function Header() {
  const here = route.value[0]
  const links = [...NAV, ...(me.value?.role === 'admin' ? ([['admin', 'Admin']] as const) : [])]
  // Signed out (or the session ended), the pages behind the links are out of reach: offer only the sign-in.
  const signedIn = me.value !== null && !needsSignIn.value
  return (
    <header class="top">
      <a class="brand" href={href('tasks')}>
        <img src="/favicon.svg" alt="" width="24" height="24" /> Gantry
      </a>
      {signedIn && (
        <nav id="main-nav" aria-label="Main">
          {links.map(([path, name]) => (
            <a key={path} href={href(path)} aria-current={here === path ? 'page' : undefined}>
              {name}
            </a>
          ))}
        </nav>
      )}
      {signedIn && me.value && (
        <div class="who">
          <span role="status">
            Signed in as {me.value.user} ({me.value.role})
          </span>
          <button type="button" class="link" onClick={() => signOut()}>
            Sign out
          </button>
        </div>
      )}
    </header>
  )
}

function Page() {
  const [section, id] = route.value
  if (section === 'tasks') return id ? <TaskPage key={id} id={id} /> : <TasksPage />
  if (section === 'chat') return <ChatPage key={id ?? ''} id={id} />
  if (section === 'desktop') return <DesktopPage />
  if (section === 'status') return <StatusPage />
  if (section === 'admin') return <AdminPage />
  return (
    <section>
      <h1>Not found</h1>
      <p>
        There is no page <code>{route.value.join('/')}</code>. <a href={href('tasks')}>Go to the tasks</a>.
      </p>
    </section>
  )
}

function App() {
  useEffect(() => {
    initialPrincipal()
    // Once offline, ask again every few seconds so the banner goes as soon as the server is back.
    const timer = setInterval(() => {
      if (!online.value) whoAmI()
    }, 3000)
    return () => clearInterval(timer)
  }, [])
  const offline = !online.value || streamsDown.value > 0
  return (
    <>
      <Header />
      {offline && (
        <div class="banner" role="alert">
          Offline: reconnecting…
        </div>
      )}
      {needsSignIn.value && <SignIn />}
      <main id="main" hidden={needsSignIn.value || !me.value}>
        {me.value && <Page />}
      </main>
    </>
  )
}

render(<App />, document.getElementById('app')!)
