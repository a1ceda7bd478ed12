// Node-RED settings for benchmarks/peer_nodered.py: a PostgreSQL pool the function nodes share, no editor.
const { Pool } = require("pg");

module.exports = {
  uiPort: Number(process.env.NR_PORT || 1880),
  uiHost: "127.0.0.1",
  httpAdminRoot: false,
  httpNodeRoot: false,
  flowFile: process.env.NR_FLOWS || "flows.json",
  credentialSecret: false,
  logging: { console: { level: "warn" } },
  functionGlobalContext: {
    pgPool: new Pool({ connectionString: process.env.NR_PGURL, max: 8 }),
  },
};
