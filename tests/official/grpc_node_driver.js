// Drives npm's official RocketMQ 5 client (rocketmq-client-nodejs 1.0.8) against a broker's gRPC
// endpoint, in its own process (clients.ensure_grpc_node_client). Same modes, flags and JSON lines
// as grpc_py_driver.py (see there): produce, simple, push. Exit 0 when every expected key was acked.
'use strict';
const { Producer, SimpleConsumer, PushConsumer, ConsumeResult } = require('rocketmq-client-nodejs');

function parse(argv) {
  const args = { mode: argv[0], count: 10, prefix: 'K', kind: 'normal', delayS: 3, groups: 3, pauseMs: 0,
    expect: 0, timeoutS: 60, invisibleS: 5, expire: 0, change: 0, failFirst: 0, ak: '', sk: '', group: '' };
  const names = { '--endpoints': 'endpoints', '--topic': 'topic', '--group': 'group', '--count': 'count',
    '--prefix': 'prefix', '--kind': 'kind', '--delay-s': 'delayS', '--groups': 'groups', '--pause-ms': 'pauseMs',
    '--expect': 'expect', '--timeout-s': 'timeoutS', '--invisible-s': 'invisibleS', '--expire': 'expire',
    '--change': 'change', '--fail-first': 'failFirst', '--ak': 'ak', '--sk': 'sk' };
  for (let i = 1; i < argv.length; i += 2) {
    const name = names[argv[i]];
    if (!name) throw new Error(`unknown flag ${argv[i]}`);
    const value = argv[i + 1];
    args[name] = typeof args[name] === 'number' ? Number(value) : value;
  }
  return args;
}

const emit = doc => process.stdout.write(JSON.stringify(doc) + '\n');
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

function options(args) {
  const opts = { endpoints: args.endpoints, requestTimeout: 5000 };
  if (args.ak) opts.sessionCredentials = { accessKey: args.ak, accessSecret: args.sk };
  return opts;
}

function view(msg, action) {
  const keys = [...(msg.keys || [])].sort();
  return { key: keys[0] || null, attempt: msg.deliveryAttempt, action, topic: msg.topic,
    body: msg.body.toString(), tag: msg.tag || null, group: msg.messageGroup || null,
    seq: msg.properties ? msg.properties.get('seq') : null, msg_id: msg.messageId,
    queue_offset: msg.offset === undefined ? null : Number(msg.offset), handle: msg.receiptHandle,
    at_ms: Date.now() };
}

async function produce(args) {
  const producer = new Producer({ ...options(args), topic: args.topic });
  await producer.startup();
  try {
    for (let i = 0; i < args.count; i++) {
      const key = `${args.prefix}-${i}`;
      const msg = { topic: args.topic, tag: `tag${i % 3}`, keys: [key], body: Buffer.from(`body-${key}`),
        properties: new Map([['seq', String(i)]]) };
      if (args.kind === 'delay') msg.delay = args.delayS * 1000;
      if (args.kind === 'fifo') msg.messageGroup = `g${i % args.groups}`;
      try {
        const receipt = await producer.send(msg);
        emit({ key, status: 'OK', msg_id: receipt.messageId, sent_ms: Date.now() });
      } catch (err) {
        emit({ key, status: 'ERROR', error: String(err && err.message || err) });
      }
      if (args.pauseMs) await sleep(args.pauseMs);
    }
  } finally {
    await producer.shutdown();
  }
  return 0;
}

// As grpc_py_driver.ack: an ack whose answer was lost is tried again (within its invisible time)
// until answered or its handle is refused; false: not acked (the message comes back).
async function ack(consumer, msg, key, invisibleS) {
  const giveUp = Date.now() + invisibleS * 1000 - 1000;
  for (;;) {
    try {
      await consumer.ack(msg);
      return true;
    } catch (err) {
      const text = String(err && err.message || err);
      emit({ error: `ack ${key}: ${text}` });
      if (text.includes('receipt handle') || Date.now() > giveUp) return false;
      await sleep(300);
    }
  }
}

async function simple(args) {
  const consumer = new SimpleConsumer({ ...options(args), consumerGroup: args.group,
    subscriptions: new Map([[args.topic, '*']]), awaitDuration: 3000 });
  await consumer.startup();
  const acked = new Set(), held = new Set(), changed = new Set();
  const deadline = Date.now() + args.timeoutS * 1000;
  try {
    while (acked.size < args.expect && Date.now() < deadline) {
      let messages;
      try {
        messages = await consumer.receive(16, args.invisibleS * 1000);
      } catch (err) {
        emit({ error: `receive: ${err && err.message || err}` });
        await sleep(500);
        continue;
      }
      for (const msg of messages || []) {
        const doc = view(msg, '');
        const key = doc.key;
        if (acked.has(key)) emit({ ...doc, action: 'duplicate' });
        if (args.expire && !held.has(key) && held.size < args.expire) {
          held.add(key);
          emit({ ...doc, action: 'skip' });
          continue;
        }
        if (args.change && !held.has(key) && !changed.has(key) && changed.size < args.change) {
          changed.add(key);
          try {
            await consumer.changeInvisibleDuration(msg, 2000);
            emit({ ...doc, action: 'change' });
            await sleep(500);
          } catch (err) {
            emit({ error: `change: ${err && err.message || err}` });
            continue;
          }
        }
        if (!await ack(consumer, msg, key, args.invisibleS)) continue;
        acked.add(key);
        emit({ ...doc, action: 'ack' });
      }
    }
  } finally {
    await consumer.shutdown();
  }
  return acked.size >= args.expect ? 0 : 1;
}

async function push(args) {
  const acked = new Set(), failed = new Set();
  const consumer = new PushConsumer({ ...options(args), consumerGroup: args.group,
    subscriptions: new Map([[args.topic, '*']]),
    messageListener: {
      async consume(msg) {
        const doc = view(msg, 'ack');
        if (!failed.has(doc.key) && failed.size < args.failFirst) {
          failed.add(doc.key);
          emit({ ...doc, action: 'fail' });
          return ConsumeResult.FAILURE;
        }
        if (acked.has(doc.key)) doc.action = 'duplicate';
        acked.add(doc.key);
        emit(doc);
        return ConsumeResult.SUCCESS;
      },
    } });
  await consumer.startup();
  const deadline = Date.now() + args.timeoutS * 1000;
  while (acked.size < args.expect && Date.now() < deadline) await sleep(200);
  await sleep(1000);
  await consumer.shutdown();
  return acked.size >= args.expect ? 0 : 1;
}

const args = parse(process.argv.slice(2));
({ produce, simple, push })[args.mode](args).then(code => process.exit(code), err => {
  process.stderr.write(`driver failed: ${err && err.stack || err}\n`);
  process.exit(2);
});
