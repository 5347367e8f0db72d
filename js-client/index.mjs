// The Node ES-module entry: the same plugin as `require('p2p-relay-client')` (index.js,
// streams are Node `Duplex`). Browsers and bundlers targeting them get browser.mjs instead.
import plugin from './index.js';

export const { p2pClientPlugin, SOCKET_EVENT } = plugin;
export default plugin;
