// node-postgres through one pgkeel port: prints one JSON object with what the e2e test checks.
'use strict';
const { Client } = require('pg');

const port = Number(process.argv[2]);
const config = { host: '127.0.0.1', port, user: 'postgres', database: 'postgres' };

async function cancelled(client) {
  // node-postgres sends a real CancelRequest (processID + secretKey) on a new connection.
  const query = client.query('select pg_sleep(20)');
  await new Promise((resolve) => setTimeout(resolve, 500));
  new Client(config).cancel(client, client.activeQuery);
  const started = Date.now();
  try {
    await query;
    return { code: null };
  } catch (err) {
    return { code: err.code, seconds: (Date.now() - started) / 1000 };
  }
}

async function main() {
  const client = new Client(config);
  const notices = [];
  client.on('notice', (n) => notices.push(n.message));
  await client.connect();
  const out = {};
  const id = await client.query('select pg_is_in_recovery() as r, inet_server_port() as p');
  out.inRecovery = id.rows[0].r;
  out.serverPort = id.rows[0].p;
  const params = await client.query('select $1::int + $2::int as sum, $3::text as t', [40, 2, 'héllo']);
  out.sum = params.rows[0].sum;
  out.text = params.rows[0].t;
  const big = await client.query("select g, repeat('x', 1000) as pad from generate_series(1, 20000) g");
  out.bigRows = big.rowCount;
  out.bigBytes = big.rows.reduce((n, row) => n + row.pad.length, 0);
  try {
    await client.query('select 1/0');
  } catch (err) {
    out.errorCode = err.code;
  }
  await client.query("do $$ begin raise notice 'hello from %', 'pgkeel'; end $$");
  out.notices = notices;
  out.afterError = (await client.query('select 7 as seven')).rows[0].seven;
  out.cancel = await cancelled(client);
  out.afterCancel = (await client.query('select 8 as eight')).rows[0].eight;
  await client.end();
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.log(JSON.stringify({ fatal: String(err), code: err.code }));
  process.exit(1);
});
