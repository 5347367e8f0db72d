// The Node ES-module entry: the same plugin as `require('p2p-relay-client')` (index.js, built
// from src/node.mjs and src/core.mjs; streams are Node `Duplex`), so `import` and `require`
// share one instance. Browsers and bundlers targeting them get browser.mjs instead.
import plugin from './index.js';

export const { p2pClientPlugin, SOCKET_EVENT } = plugin;
export default plugin;
