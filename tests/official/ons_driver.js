// Drives npm's ali-ons, a pure-JS RocketMQ remoting client, against a name server.
// Same command line and JSON-lines output as cpp_driver.py:
//   node ons_driver.js produce --namesrv ADDR --topic T --count N --prefix P [--attempts A] [--interval-ms I]
//   node ons_driver.js consume --namesrv ADDR --topic T --group G --expect N --timeout-s S
// Both take --access-key AK --secret-key SK: ali-ons's accessKeyId / accessKeySecret (RocketMQ ACL).
'use strict';
const { Producer, Consumer, Message } = require('ali-ons');

function parseArgs(argv) {
  const args = { mode: argv[0] };
  for (let i = 1; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  return args;
}

// ali-ons asks for an HTTP client to look up name servers on Aliyun; with nameSrv given it never
// calls it, so one that refuses is enough (and proves no HTTP request is made).
const httpclient = { request() { throw new Error('no HTTP name-server lookup in open-source mode'); } };

function credentials(args) {
  return args['access-key'] ? { accessKeyId: args['access-key'], accessKeySecret: args['secret-key'] } : {};
}

async function produce(args) {
  const producer = new Producer({ httpclient, nameSrv: args.namesrv, producerGroup: `PID_${args.prefix}`,
    ...credentials(args) });
  producer.on('error', err => console.error('producer error', err.message));
  await producer.ready();
  // ali-ons retries a refused send and then throws a generic "Send [N] times, still failed": keep the
  // broker's last answer (code and remark) so the ERROR line can report it.
  let lastBrokerError = null;
  const kernel = producer.sendKernelImpl.bind(producer);
  producer.sendKernelImpl = async (...a) => {
    try { return await kernel(...a); } catch (err) { lastBrokerError = err; throw err; }
  };
  let failures = 0;
  const attempts = Number(args.attempts || 3);
  const intervalMs = Number(args['interval-ms'] || 0);
  for (let i = 0; i < Number(args.count); i++) {
    if (intervalMs && i) await new Promise(r => setTimeout(r, intervalMs));
    const key = `${args.prefix}-${i}`;
    const msg = new Message(args.topic, `tag${i % 3}`, `body-${key}`);
    msg.keys = [ key ];
    msg.properties.seq = String(i);
    let done = false;
    for (let attempt = 0; attempt < attempts && !done; attempt++) {
      try {
        const result = await producer.send(msg);
        console.log(JSON.stringify({ key, status: result.sendStatus, msg_id: result.msgId, offset: Number(result.queueOffset) }));
        done = true;
      } catch (err) {
        if (attempt === attempts - 1) { console.log(JSON.stringify({ key, status: 'ERROR', error: err.message,
          broker_code: lastBrokerError ? lastBrokerError.code : null,
          broker_error: lastBrokerError ? lastBrokerError.message : null })); failures++; }
        else await new Promise(r => setTimeout(r, 500));
      }
    }
  }
  await producer.close();
  return failures ? 1 : 0;
}

async function consume(args) {
  const seen = new Set();
  const consumer = new Consumer({ httpclient, nameSrv: args.namesrv, consumerGroup: args.group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET', persistent: true, ...credentials(args) });
  consumer.on('error', err => console.error('consumer error', err.message));
  let resolveDone;
  const done = new Promise(r => { resolveDone = r; });
  consumer.subscribe(args.topic, '*', async msg => {
    const key = msg.keys;  // ali-ons joins keys into one space-separated string
    seen.add(key);
    console.log(JSON.stringify({ key, tags: msg.tags, body: msg.body.toString(), seq: msg.properties.seq,
      queue_id: msg.queueId, queue_offset: Number(msg.queueOffset), msg_id: msg.msgId }));
    if (seen.size >= Number(args.expect)) resolveDone();
  });
  await consumer.ready();
  await Promise.race([ done, new Promise(r => setTimeout(r, Number(args['timeout-s']) * 1000)) ]);
  await consumer.close();
  console.log(JSON.stringify({ done: true, distinct: seen.size }));
  return seen.size >= Number(args.expect) ? 0 : 1;
}

const args = parseArgs(process.argv.slice(2));
(args.mode === 'produce' ? produce(args) : consume(args))
  .then(code => process.exit(code))
  .catch(err => { console.error(err); process.exit(2); });
