import { render } from 'preact'

render(<p>Gantry</p>, document.getElementById('app')!)
